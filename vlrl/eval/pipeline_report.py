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


def before_after(before: dict, after: dict, sampled: tuple[dict, dict] | None = None) -> list[str]:
    """Markdown table of pass@1 and mean tokens per modality, before and after (greedy ``eval.json``
    reports). ``sampled``: ({modality or "overall": pass@1} before, the same after), the mean over samples
    at T 1 that RL optimizes (a run's first and last ``heldout_points``), as three more columns."""
    head = "| modality | pass@1 before | pass@1 after | change (points) | tokens before | tokens after |"
    if sampled:
        head += " sampled before | sampled after | sampled change (points) |"
    rows = [head, "|---" * head.count(" | ") + "|---|"]
    groups = {"overall": (before["overall"], after["overall"])}
    groups.update({m: (before["by_modality"][m], after["by_modality"][m])
                   for m in before["by_modality"] if m in after["by_modality"]})
    for m, (b, a) in groups.items():
        row = (f"| {m} | {b['pass@1']:.3f} | {a['pass@1']:.3f} | {100 * (a['pass@1'] - b['pass@1']):+.1f} | "
               f"{b['mean_tokens']:.0f} | {a['mean_tokens']:.0f} |")
        if sampled:
            sb, sa = sampled[0].get(m), sampled[1].get(m)
            row += (f" {sb:.3f} | {sa:.3f} | {100 * (sa - sb):+.1f} |" if sb is not None and sa is not None
                    else "  |  |  |")
        rows.append(row)
    return rows


def heldout_table(points: list[dict]) -> list[str]:
    """Markdown table of held-out pass@1 per evaluated iteration (``vlrl.eval.curves.heldout_points``):
    greedy and, where evaluated, sampled, per modality, with a last row of the change from the first."""
    groups = sorted({m for p in points for m in p["greedy"]}, key=lambda m: (m != "overall", m))
    cols = [(how, m) for how in ("greedy", "sampled") for m in groups if any(m in p[how] for p in points)]
    rows = ["| iteration | " + " | ".join(f"{m} ({how})" for how, m in cols) + " |",
            "|---|" + "---|" * len(cols)]
    for p in points:
        rows.append(f"| {p['iteration']} | " + " | ".join(f"{p[how][m]:.3f}" if m in p[how] else ""
                                                          for how, m in cols) + " |")
    first, last = points[0], points[-1]
    rows.append(f"| change {first['iteration']} -> {last['iteration']} (points) | " + " | ".join(
        f"{100 * (last[how][m] - first[how][m]):+.1f}" if m in last[how] and m in first[how] else ""
        for how, m in cols) + " |")
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


def _start_step(run: Path, step: str) -> str | None:
    """The pipeline step whose model this step started from (its resolved ``init_from``), if any."""
    cfg = run / step / "config.yaml"
    if not cfg.is_file():
        return None
    import yaml

    start = Path(str((yaml.safe_load(cfg.read_text()) or {}).get("init_from") or ""))
    return start.name if start.parent == run else None


def step_section(run: Path, step: str, title: str, labels: dict[str, str]) -> list[str]:
    """One step's section, from what its stage left in ``run/step``: curves, report plot and tables (or
    its held-out evaluation), and the held-out accuracy before / after it when it started from an
    earlier step's model and both were evaluated."""
    d = run / step
    lines = [f"## {title}", ""]
    for png, alt in (("curves.png", f"{step} curves"), ("heldout.png", f"{step} held-out pass@1"),
                     ("report.png", step)):
        if (d / png).is_file():
            lines += [f"![{alt}]({step}/{png})", ""]
    for md in (d / "report.md", d / "eval" / "eval.md"):
        if md.is_file():
            lines += [_demote(md.read_text()), ""]
            break
    from vlrl.eval.curves import heldout_points

    points = heldout_points(d)
    if len(points) >= 2:
        lines += [f"Held-out pass@1 over the {title} iterations (greedy, and the mean over samples at the rollout "
                  "temperature where evaluated):", "", *heldout_table(points), ""]
    start = _start_step(run, step)
    before, after = (_last_eval(run / start), _last_eval(d)) if start else (None, None)
    if before and after and not (d / "eval" / "eval.json").is_file():
        # the starting model's sampled pass@1 is the stage's iteration-0 evaluation (eval_at_start)
        sampled = ((points[0]["sampled"], points[-1]["sampled"]) if len(points) >= 2 and points[0]["iteration"] == 0
                   and points[0]["sampled"] and points[-1]["sampled"] else None)
        lines += [f"Held-out accuracy per modality before ({labels.get(start, start)}) and after {title} (greedy; "
                  "sampled: the mean over samples at the rollout temperature):", "",
                  *before_after(before, after, sampled), ""]
    return lines if len(lines) > 2 else []


def write_pipeline_report(run: Path, stages: Sequence[str]) -> Path:
    """``run/report.md``: the timings, then one section per step of ``stages`` (names of PIPELINE steps)."""
    from vlrl.stages import PIPELINE

    labels = {name: step.label for name, step in PIPELINE.items()}
    lines = [f"# vlrl pipeline: {run.name}", "", "## Stages", "", *_timings(run, stages), ""]
    for step in stages:
        lines += step_section(run, step, PIPELINE[step].title, labels)
    out = run / "report.md"
    out.write_text("\n".join(lines) + "\n")
    return out
