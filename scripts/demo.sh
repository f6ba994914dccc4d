#!/usr/bin/env bash
# The main job on the embedded default (configs/tiny/), CPU only, nothing downloaded (~6 min on 2 cores):
# a tiny VLM built from configs -> alignment on scene descriptions -> long-CoT warm-up SFT -> held-out
# evaluation -> answers to image questions it has never seen.
source "$(dirname "$0")/_env.sh"
RUN=${RUN:-runs/demo}
echo "[demo] 1/4 alignment: describe synthetic scenes (configs/tiny/align.yaml)"
vlrl align --config configs/tiny/align.yaml output_dir="$RUN/align"
echo "[demo] 2/4 long-CoT warm-up SFT + held-out evaluation (configs/tiny/warmup.yaml)"
vlrl warmup --config configs/tiny/warmup.yaml init_from="$RUN/align" output_dir="$RUN/warmup"
echo "[demo] 3/4 held-out questions, written as files"
vlrl data synth --task shapes --n 4 --levels 1-3 --seed 4242 --out "$RUN/questions"
vlrl data synth --task text_rendered --n 1 --levels 1 --seed 4242 --out "$RUN/rendered"
echo "[demo] 4/4 asking the trained model"
python - "$RUN" <<'PY'
import json, sys
from vlrl import Predictor
run = sys.argv[1]
p = Predictor.load(f"{run}/warmup", device="cpu")
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
echo "[demo] the CLI, streamed: vlrl infer --model $RUN/warmup --image $first --question 'How many shapes are there?'"
vlrl infer --model "$RUN/warmup" --image "$first" --question "How many shapes are there?" --max-new-tokens 256
echo
echo "[demo] held-out report: $RUN/warmup/eval/eval.md (plot: eval.png); training curve: $RUN/warmup/metrics.jsonl"
cat "$RUN/warmup/eval/eval.md"
