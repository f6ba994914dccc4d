"""How evaluated responses answer: direct ("Answer: N" at once) or reasoned, per modality. Prints JSON.

    python scripts/answer_modes.py runs/tiny/rl/eval            # every records.jsonl below: iter-N, iter-N/sampled
    python scripts/answer_modes.py runs/a/rl/eval/iter-20/records.jsonl --prefix "Answer:"

Per file and modality: the responses counted, the share that are direct (start with ``--prefix``) and
each mode's accuracy (``vlrl.eval.metrics.answer_modes``). A policy that gains pass@1 by guessing
shows here as a rising direct share with a direct accuracy below the reasoned one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vlrl.eval.metrics import answer_modes
from vlrl.types import PromptRecord


def read_records(path: Path) -> list[PromptRecord]:
    """The PromptRecords of one evaluation's records.jsonl (an error names the file and line)."""
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(PromptRecord(**json.loads(line)))
        except (json.JSONDecodeError, TypeError) as e:
            raise SystemExit(f"{path}:{n}: not an evaluation record ({e})")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+", type=Path, help="records.jsonl files, or directories searched for them")
    ap.add_argument("--prefix", default="Answer:", help="what a direct response starts with")
    a = ap.parse_args(argv)
    files = []
    for p in a.paths:
        if not p.exists():
            raise SystemExit(f"{p}: no such file or directory")
        files += sorted(p.rglob("records.jsonl")) if p.is_dir() else [p]
    if not files:
        raise SystemExit(f"no records.jsonl under {', '.join(map(str, a.paths))}")
    out = {str(f.parent): answer_modes(read_records(f), a.prefix) for f in files}
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
