"""Evaluation reports: JSON (everything), Markdown (tables), PNG (pass@1 by modality and difficulty)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from vlrl.eval.metrics import PromptRecord


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def markdown(report: dict, title: str = "Evaluation") -> str:
    overall = report["overall"]
    cols = ["prompts", "pass@1"] + sorted(k for k in overall if k.startswith(("pass@", "maj@")) and k != "pass@1")
    cols += ["mean_tokens", "p95_tokens", "no_answer_rate", "verifier_errors"]
    lines = [f"# {title}", "", "| group | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    rows = [("overall", overall)]
    for section, label in (("by_modality", "modality"), ("by_difficulty", "difficulty"), ("by_domain", "domain")):
        rows += [(f"{label}={g}", m) for g, m in report[section].items()]
    for name, m in rows:
        lines.append(f"| {name} | " + " | ".join(_fmt(m.get(c, "")) for c in cols) + " |")
    gap = report["modality_gap"]
    if gap.get("pairs"):
        lines += ["", f"Modality gap over {gap['pairs']} text / rendered-image pairs: text pass@1 "
                      f"{gap['text_pass@1']:.3f}, rendered pass@1 {gap['rendered_pass@1']:.3f}, gap {gap['gap']:+.3f}"]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path, title: str = "Evaluation") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, section, label in ((axes[0], "by_modality", "modality"), (axes[1], "by_difficulty", "difficulty")):
        groups = report[section]
        names = list(groups)
        ax.bar(names, [groups[g]["pass@1"] for g in names], color="#4c72b0")
        ax.set_ylim(0, 1)
        ax.set_xlabel(label)
        ax.set_ylabel("pass@1")
        for i, g in enumerate(names):
            ax.text(i, groups[g]["pass@1"] + 0.02, f"{groups[g]['pass@1']:.2f}", ha="center", fontsize=8)
    fig.suptitle(f"{title}: pass@1 {report['overall']['pass@1']:.3f}, mean tokens "
                 f"{report['overall']['mean_tokens']:.1f}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(report: dict, records: list[PromptRecord], out_dir: str | Path, title: str = "Evaluation") -> Path:
    """Write eval.json, eval.md, eval.png and records.jsonl (every response) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    (out / "eval.md").write_text(markdown(report, title))
    with (out / "records.jsonl").open("w") as f:
        for r in records:
            f.write(json.dumps(asdict(r)) + "\n")
    plot(report, out / "eval.png", title)
    return out
