"""Token-efficiency report (k1.5 Fig. 7): pass@1 and mean response tokens per model and modality.

``report.json`` (everything), ``report.md`` (one table per modality), ``report.png`` (accuracy vs mean
tokens, one panel per modality, one point per model).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

PANELS = ("overall", "image", "text", "text_rendered")


def efficiency_table(reports: Mapping[str, dict]) -> dict[str, dict[str, dict]]:
    """{panel: {model: {"pass@1", "mean_tokens", "prompts"}}} from evaluation reports (``full_report``)."""
    out: dict[str, dict[str, dict]] = {p: {} for p in PANELS}
    for name, rep in reports.items():
        groups = {"overall": rep["overall"], **rep["by_modality"]}
        for panel in PANELS:
            if panel in groups:
                g = groups[panel]
                out[panel][name] = {"pass@1": g["pass@1"], "mean_tokens": g["mean_tokens"], "prompts": g["prompts"]}
    return {p: v for p, v in out.items() if v}


def relative_to(table: dict, base: str) -> dict[str, dict[str, dict]]:
    """Per panel and model: token cut (1 - tokens / base tokens) and accuracy change (points) vs ``base``."""
    out: dict[str, dict[str, dict]] = {}
    for panel, rows in table.items():
        if base not in rows:
            continue
        b = rows[base]
        out[panel] = {m: {"token_cut": 1 - r["mean_tokens"] / max(1e-9, b["mean_tokens"]),
                          "accuracy_change_points": 100 * (r["pass@1"] - b["pass@1"])} for m, r in rows.items()}
    return out


def best_efficiency(reports: Mapping[str, dict], base: str, min_token_cut: float) -> str:
    """The model with the best balance of accuracy and tokens (k1.5 §9 starts long2short RL from it): the
    highest overall pass@1 among the models whose mean response is at least ``min_token_cut`` shorter
    than ``base``'s (ties: fewer tokens); ``base`` itself when no model is that much shorter.

    >>> r = lambda acc, tok: {"overall": {"pass@1": acc, "mean_tokens": tok, "prompts": 10}, "by_modality": {}}
    >>> best_efficiency({"long": r(.30, 100), "a": r(.25, 50), "b": r(.20, 40), "c": r(.31, 90)}, "long", 0.4)
    'a'"""
    b = reports[base]["overall"]["mean_tokens"]
    fits = [(r["overall"]["pass@1"], -r["overall"]["mean_tokens"], name) for name, r in reports.items()
            if name != base and 1 - r["overall"]["mean_tokens"] / max(1e-9, b) >= min_token_cut]
    return max(fits)[2] if fits else base


def markdown(table: dict, rel: dict, base: str) -> str:
    lines = ["# Token efficiency", "", f"Changes are relative to `{base}` (token cut: fraction of its mean response "
             "tokens saved; accuracy change in points).", ""]
    for panel, rows in table.items():
        lines += [f"## {panel}", "", "| model | pass@1 | mean tokens | token cut | accuracy change |", "|---|---|---|---|---|"]
        for m, r in rows.items():
            d = rel.get(panel, {}).get(m, {})
            cut = f"{d['token_cut']:+.1%}" if d else ""
            acc = f"{d['accuracy_change_points']:+.1f}" if d else ""
            lines.append(f"| {m} | {r['pass@1']:.3f} | {r['mean_tokens']:.1f} | {cut} | {acc} |")
        lines.append("")
    return "\n".join(lines)


def plot(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(table), figsize=(4.2 * len(table), 3.8), squeeze=False)
    for ax, (panel, rows) in zip(axes[0], table.items()):
        for m, r in rows.items():
            ax.scatter(r["mean_tokens"], r["pass@1"], s=40)
            ax.annotate(m, (r["mean_tokens"], r["pass@1"]), fontsize=8, xytext=(3, 3), textcoords="offset points")
        ax.set_title(panel)
        ax.set_xlabel("mean response tokens")
        ax.set_ylabel("pass@1")
        ax.grid(alpha=0.3)
    fig.suptitle("Accuracy vs response length (long2short)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_efficiency_report(reports: Mapping[str, dict], out_dir: str | Path, base: str) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = efficiency_table(reports)
    rel = relative_to(table, base)
    result = {"base": base, "table": table, "relative": rel}
    (out / "report.json").write_text(json.dumps(result, indent=2))
    (out / "report.md").write_text(markdown(table, rel, base))
    plot(table, out / "report.png")
    return result
