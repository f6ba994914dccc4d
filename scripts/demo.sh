#!/usr/bin/env bash
# The main job on the embedded default (configs/tiny/), CPU only, nothing downloaded:
# synthetic data -> tiny VLM built from configs -> supervised training -> answers to image questions.
source "$(dirname "$0")/_env.sh"
RUN=${RUN:-runs/demo}
echo "[demo] 1/3 synthetic held-out questions -> $RUN/questions"
vlrl data synth --task shapes --n 6 --levels 1-2 --seed 4242 --out "$RUN/questions"
vlrl data synth --task text_rendered --n 2 --levels 1 --seed 4242 --out "$RUN/rendered"
echo "[demo] 2/3 training the tiny model (configs/tiny/warmup.yaml)"
vlrl warmup --config configs/tiny/warmup.yaml output_dir="$RUN/model"
echo "[demo] 3/3 asking the trained model about images it has never seen"
python - "$RUN" <<'PY'
import json, sys
from vlrl import Predictor
run = sys.argv[1]
p = Predictor.load(f"{run}/model", device="cpu")
for name in ("questions", "rendered"):
    for line in open(f"{run}/{name}/data.jsonl"):
        row = json.loads(line)
        images = [f"{run}/{name}/{im}" for im in row["images"]]
        answer = p.answer(row["question"], images=images, max_new_tokens=16)
        print(f"  {images[0] if images else '(text only)':45s} {row['question']!r:45s} -> {answer!r} (reference {row['answer']})")
PY
first=$(ls "$RUN"/questions/images/*.png | head -1)
echo "[demo] the CLI, streamed: vlrl infer --model $RUN/model --image $first --question 'How many shapes are there?'"
vlrl infer --model "$RUN/model" --image "$first" --question "How many shapes are there?" --max-new-tokens 16
