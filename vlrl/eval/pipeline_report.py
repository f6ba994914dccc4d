"""``<run>/report.md``: every stage's tables and plots in one page, linked by relative paths."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence


def _demote(md: str) -> str:
    """Shift a stage report's headings two levels down so they nest under the pipeline's sections."""
    return "\n".join("##" + line if line.startswith("#") else line for line in md.splitlines())


def _last_eval(stage_dir: Path) -> dict | None:
    """The stage's final held-out evaluation: ``eval/eval.json`` or the last ``eval/iter-N/eval.json``."""
    if (stage_dir / "eval" / "eval.json").is_file():
        return json.loads((stage_dir / "eval" / "eval.json").read_text())
    iters = sorted((stage_dir / "eval").glob("iter-*/eval.json"), key=lambda p: int(p.parent.name.split("-")[1]))
    return json.loads(iters[-1].read_text()) if iters else None


def before_after(before: dict, after: dict) -> list[str]:
    """Markdown table of pass@1 and mean tokens per modality, before and after."""
    rows = ["| modality | pass@1 before | pass@1 after | change (points) | tokens before | tokens after |",
            "|---|---|---|---|---|---|"]
    groups = {"overall": (before["overall"], after["overall"])}
    groups.update({m: (before["by_modality"][m], after["by_modality"][m])
                   for m in before["by_modality"] if m in after["by_modality"]})
    for m, (b, a) in groups.items():
        rows.append(f"| {m} | {b['pass@1']:.3f} | {a['pass@1']:.3f} | {100 * (a['pass@1'] - b['pass@1']):+.1f} | "
                    f"{b['mean_tokens']:.0f} | {a['mean_tokens']:.0f} |")
    return rows


def _timings(run: Path, stages: Sequence[str]) -> list[str]:
    rows = ["| stage | minutes |", "|---|---|"]
    total = 0.0
    for s in stages:
        done = run / s / ".done"
        sec = json.loads(done.read_text()).get("seconds", 0.0) if done.is_file() else 0.0
        total += sec
        rows.append(f"| {s} | {sec / 60:.1f} |")
    rows.append(f"| **total** | **{total / 60:.1f}** |")
    return rows


def write_pipeline_report(run: Path, stages: Sequence[str]) -> Path:
    lines = [f"# vlrl pipeline: {run.name}", "", "## Stages", "", *_timings(run, stages), ""]
    for stage, title in (("warmup", "Long-CoT warm-up"), ("warmup_short", "Short-CoT warm-up (for merging)")):
        if (run / stage / "curves.png").is_file():
            lines += [f"## {title}", "", f"![{stage} curves]({stage}/curves.png)", ""]
            ev = run / stage / "eval" / "eval.md"
            lines += [_demote(ev.read_text()), ""] if ev.is_file() else []
    if (run / "curate" / "report.md").is_file():
        lines += ["## Curation", "", "![curation](curate/report.png)", "", _demote((run / "curate" / "report.md").read_text()), ""]
    if (run / "rl" / "metrics.jsonl").is_file():
        lines += ["## RL", "", "![RL curves](rl/curves.png)", ""]
        before, after = _last_eval(run / "warmup"), _last_eval(run / "rl")
        if before and after:
            lines += ["Held-out accuracy per modality before (warm-up) and after RL:", "", *before_after(before, after), ""]
    if (run / "long2short" / "report.md").is_file():
        lines += ["## Long2short", "", "![token efficiency](long2short/report.png)", "",
                  _demote((run / "long2short" / "report.md").read_text()), ""]
    out = run / "report.md"
    out.write_text("\n".join(lines) + "\n")
    return out
