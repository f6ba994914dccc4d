"""The curation report: counts after each filter, removal reasons, distributions, planted-kind check.

``report.json`` holds everything; ``report.md`` the tables; ``report.png`` the funnel, the removal reasons
and the final distribution by modality x difficulty.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Sequence

from vlrl.types import Sample


def distribution(samples: Sequence[Sample], key: str) -> dict[str, int]:
    from vlrl.curation.select import stratum_value

    return dict(sorted(Counter(stratum_value(s, key) for s in samples).items()))


def kind_check(pool: Sequence[Sample], removed: dict[str, list[str]], selected_ids: set[str]) -> dict:
    """For pools whose generator planted ``meta["kind"]``: per kind, how many were removed (and by which
    filter), survived the filters, and were selected. Empty when no sample has a kind."""
    table: dict[str, Counter] = {}
    for s in pool:
        kind = s.meta.get("kind")
        if kind is None:
            continue
        c = table.setdefault(kind, Counter())
        c["total"] += 1
        reasons = removed.get(s.id)
        if reasons:
            c["removed"] += 1
            for r in reasons:
                c[f"by:{r}"] += 1
        else:
            c["passed_filters"] += 1
        c["selected"] += s.id in selected_ids
    return {k: dict(v) for k, v in sorted(table.items())}


def markdown(rep: dict) -> str:
    lines = ["# Curation report", "", "| step | prompts |", "|---|---|"]
    lines += [f"| {step} | {n} |" for step, n in rep["funnel"]]
    lines += ["", "## Removal reasons", "", "| reason | prompts |", "|---|---|"]
    lines += [f"| {r} | {n} |" for r, n in rep["reasons"].items()]
    if rep.get("kinds"):
        cols = sorted({c for v in rep["kinds"].values() for c in v} - {"total"})
        lines += ["", "## Planted kinds (generator ground truth)", "", "| kind | total | " + " | ".join(cols) + " |",
                  "|---" * (len(cols) + 2) + "|"]
        lines += [f"| {k} | {v['total']} | " + " | ".join(str(v.get(c, 0)) for c in cols) + " |"
                  for k, v in rep["kinds"].items()]
    for key, dist in rep["distribution"].items():
        lines += ["", f"## Selected by {key}", "", f"| {key} | prompts |", "|---|---|"]
        lines += [f"| {v} | {n} |" for v, n in dist.items()]
    sel = rep.get("selection")
    if sel and sel.get("short_cells"):
        lines += ["", f"## Cells the pool could not fill (shortfall {sel['shortfall']})", "",
                  "| " + " | ".join(sel["by"]) + " | quota | available |", "|---" * (len(sel["by"]) + 2) + "|"]
        lines += ["| " + " | ".join(str(c[k]) for k in sel["by"]) + f" | {c['quota']} | {c['available']} |"
                  for c in sel["short_cells"]]
    return "\n".join(lines) + "\n"


def plot(rep: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    steps, counts = zip(*rep["funnel"])
    axes[0].barh(list(steps)[::-1], list(counts)[::-1], color="#4c72b0")
    axes[0].set_title("prompts after each step")
    if rep["reasons"]:
        axes[1].barh(list(rep["reasons"]), list(rep["reasons"].values()), color="#c44e52")
    axes[1].set_title("removal reasons")
    mods = rep["distribution"].get("modality", {})
    diffs = rep["distribution"].get("difficulty", {})
    for ax, dist, name in ((axes[2], diffs or mods, "difficulty" if diffs else "modality"),):
        ax.bar(list(dist), list(dist.values()), color="#55a868")
        ax.set_title(f"selected prompts by {name}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(rep: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(rep, indent=2))
    (out_dir / "report.md").write_text(markdown(rep))
    plot(rep, out_dir / "report.png")
