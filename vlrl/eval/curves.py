"""Training curves from stages' metrics.jsonl, as a PNG (people would rather look than read).

``plot_curves`` draws one run; ``plot_runs`` overlays several (e.g. ``kimi`` vs ``grpo`` from the same
start), one panel per metric. ``vlrl plot --run kimi=runs/a --run grpo=runs/b --out cmp.png`` calls it.
``plot_heldout`` draws a run's held-out evaluations over its iterations (``eval/iter-N/``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence


def _rows(path: str | Path) -> list[dict]:
    path = Path(path)
    path = path / "metrics.jsonl" if path.is_dir() else path
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, out_png: str | Path) -> Path:
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return Path(out_png)


def plot_runs(runs: Mapping[str, str | Path], keys: Sequence[str], out_png: str | Path, title: str = "",
              max_step: int | None = None) -> Path | None:
    """One panel per key present in any run (x = step), one line per run (label = its name); returns the
    PNG path, or None if nothing to plot. A run is a metrics.jsonl file or the directory holding it.
    ``max_step`` keeps steps <= it, to compare runs of different lengths over the same iterations."""
    data = {name: [r for r in _rows(p) if max_step is None or r.get("step", 0) <= max_step] for name, p in runs.items()}
    keys = [k for k in keys if any(k in r for rows in data.values() for r in rows)]
    if not keys:
        return None
    plt = _pyplot()
    cols = min(3, len(keys))
    n_rows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(n_rows, cols, figsize=(4.2 * cols, 3.0 * n_rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for name, rows in data.items():
            pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 40 else None, label=name or None)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
        if len(data) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    return _save(plt, fig, out_png)


def plot_curves(metrics_path: str | Path, keys: Sequence[str], out_png: str | Path, title: str = "") -> Path | None:
    """One run's curves (see ``plot_runs``)."""
    return plot_runs({"": metrics_path}, keys, out_png, title)


def heldout_points(run_dir: str | Path) -> list[dict]:
    """A run's held-out evaluations over iterations, from ``eval/iter-N/eval.json`` (greedy) and
    ``eval/iter-N/sampled/eval.json`` (the mean over samples): one dict per evaluated iteration with
    ``iteration``, ``greedy`` and ``sampled`` ({modality or "overall": pass@1}; ``sampled`` may be empty)."""
    def read(path: Path) -> dict:
        if not path.is_file():
            return {}
        rep = json.loads(path.read_text())
        return {"overall": rep["overall"]["pass@1"], **{m: v["pass@1"] for m, v in rep["by_modality"].items()}}

    points = []
    for d in Path(run_dir).glob("eval/iter-*"):
        if (d / "eval.json").is_file():
            points.append({"iteration": int(d.name.split("-")[1]), "greedy": read(d / "eval.json"),
                           "sampled": read(d / "sampled" / "eval.json")})
    return sorted(points, key=lambda p: p["iteration"])


def plot_heldout(run_dir: str | Path, out_png: str | Path, title: str = "") -> Path | None:
    """Held-out pass@1 per modality against the iteration (greedy solid, sampled dashed), one colour per
    modality; None with fewer than two evaluated iterations (no curve to draw)."""
    points = heldout_points(run_dir)
    if len(points) < 2:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    groups = sorted({m for p in points for m in p["greedy"]}, key=lambda m: (m != "overall", m))
    for i, m in enumerate(groups):
        for how, style in (("greedy", "-"), ("sampled", "--")):
            pts = [(p["iteration"], p[how][m]) for p in points if m in p[how]]
            if pts:
                ax.plot([x for x, _ in pts], [y for _, y in pts], style, marker="o", color=f"C{i}",
                        label=f"{m} ({how})")
    ax.set_xlabel("iteration")
    ax.set_ylabel("held-out pass@1")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    if title:
        ax.set_title(title)
    return _save(plt, fig, out_png)
