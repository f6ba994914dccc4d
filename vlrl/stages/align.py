"""Vision-language alignment: learn to describe images before learning to reason about them.

Kimi k1.5 trains the vision tower with the language model frozen first, then everything together
(reference §11). This stage trains on (image, description) pairs with a freezing schedule:

    vlrl align --config configs/tiny/align.yaml [key=value ...]

``phases`` say which modules learn and for how long (default: projector only, then all). Training data
is every image sample of ``data.sources``: its ``meta.caption`` (the synthetic generators write one from
the scene specification) or, for your own data, its ``response``. Output: a model directory the warm-up
stage loads with ``init_from``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List

from vlrl.config import save_config
from vlrl.data import load_data
from vlrl.trainer import PhaseConfig, SFTConfig, SFTTrainer, build_or_load
from vlrl.training import SFTDataset, seed_everything
from vlrl.types import Sample


@dataclass
class AlignConfig(SFTConfig):
    caption_prompt: str = "Describe the picture."
    phases: List[PhaseConfig] = field(default_factory=lambda: [
        PhaseConfig(steps=200, train=["projector"]), PhaseConfig(steps=200)])
    output_dir: str = "runs/tiny/align"


def caption_samples(samples: List[Sample], prompt: str) -> List[Sample]:
    """One description sample per image sample: the caption if there is one, else the given response."""
    out = []
    for s in samples:
        target = s.meta.get("caption") or s.response
        if not s.images or not target:
            continue
        out.append(Sample(id=f"{s.id}-caption", question=prompt, images=list(s.images), response=target,
                          domain=s.domain, modality=s.modality, meta={"task": "caption"}))
    if not out:
        raise ValueError("align: no image sample with a caption or response in data.sources")
    return out


def main(cfg: AlignConfig) -> Path:
    seed_everything(cfg.seed)
    out = Path(cfg.output_dir)
    save_config(cfg, out / "config.yaml")
    model, processor = build_or_load(cfg)
    samples = caption_samples(load_data(cfg.data.sources, cfg.data.on_bad_row, processor), cfg.caption_prompt)
    print(f"[align] {len(samples)} image-description pairs")
    trainer = SFTTrainer(cfg, model, processor, SFTDataset(samples, processor), stage="align")
    trainer.fit()
    trainer.save_final("Alignment")
    return out
