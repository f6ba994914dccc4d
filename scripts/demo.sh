#!/usr/bin/env bash
# The main job on the embedded default (configs/tiny/), CPU only, nothing downloaded (~15 min on 2 cores):
# the whole Kimi k1.5 recipe on a tiny VLM built from configs -> alignment -> long-CoT warm-up -> short-CoT
# warm-up -> prompt curation -> RL -> long2short -> report, then answers to image questions it never saw.
# Re-running skips the finished stages (NAME=other starts a fresh run directory).
source "$(dirname "$0")/_env.sh"
NAME=${NAME:-demo}
RUN=runs/$NAME
echo "[demo] 1/3 the pipeline (configs/tiny/pipeline.yaml) -> $RUN"
vlrl pipeline --config configs/tiny/pipeline.yaml name="$NAME"
echo "[demo] 2/3 held-out questions, written as files"
vlrl data synth --task shape_math --n 4 --levels 1-3 --seed 4242 --out "$RUN/questions"
vlrl data synth --task text_rendered --n 1 --levels 1 --seed 4242 --out "$RUN/rendered"
echo "[demo] 3/3 asking the RL model"
python - "$RUN" <<'PY'
import json, sys
from vlrl import Predictor
run = sys.argv[1]
p = Predictor.load(f"{run}/rl", device="cpu")
for name in ("questions", "rendered"):
    for line in open(f"{run}/{name}/data.jsonl"):
        row = json.loads(line)
        images = [f"{run}/{name}/{im}" for im in row["images"]]
        answer = p.answer(row["question"], images=images, max_new_tokens=256)
        print(f"\n[{images[0] if images else 'text only'}] {row['question']}  (reference: {row['answer']})")
        print("  " + answer.replace("\n", "\n  "))
PY
first=$(ls "$RUN"/questions/images/*.png | head -1)
echo
echo "[demo] the CLI, streamed: vlrl infer --model $RUN/rl --image $first --question 'How many shapes are there?'"
vlrl infer --model "$RUN/rl" --image "$first" --question "How many shapes are there?" --max-new-tokens 256
echo
echo "[demo] everything in one page: $RUN/report.md (curation, curves, accuracy before/after RL, token efficiency)"
