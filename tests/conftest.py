"""Shared fixtures: the tiny model built in-process from configs/tiny/model.yaml (nothing downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

from vlrl.config import load_config
from vlrl.models import build_vlm
from vlrl.stages import ModelFile

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = ROOT / "configs" / "tiny" / "model.yaml"

torch.set_num_threads(2)


def tiny_model_config(*overrides: str):
    return load_config(ModelFile, TINY_MODEL, list(overrides)).model


@pytest.fixture(scope="session")
def tiny():
    """(model, processor) of the embedded default, random init, seed 0."""
    torch.manual_seed(0)
    model, processor = build_vlm(tiny_model_config())
    return model, processor


@pytest.fixture(scope="session")
def saved_tiny(tmp_path_factory):
    """A directory holding the tiny model (random init) as `save_pretrained` writes it."""
    from vlrl.models import save_pretrained

    d = tmp_path_factory.mktemp("saved_tiny")
    torch.manual_seed(0)
    model, processor = build_vlm(tiny_model_config())
    save_pretrained(model, processor, d)
    return d


@pytest.fixture(scope="session")
def sft_tiny(tmp_path_factory):
    """A saved tiny model after 40 SFT steps on direct answers to easy problems: it answers in the right
    format, stops, and is right sometimes, so RL rewards vary within a group."""
    from processors import collate_sft
    from vlrl.data.synth import generate
    from vlrl.models import save_pretrained

    torch.manual_seed(0)
    model, proc = build_vlm(tiny_model_config())
    data = generate("shapes", 32, seed=1, levels="1-2") + generate("arithmetic", 32, seed=1, levels="1")
    batch = collate_sft([proc.encode(s, s.response) for s in data], proc.pad_token_id)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(40):
        model(batch).loss.backward()
        opt.step()
        opt.zero_grad()
    d = tmp_path_factory.mktemp("sft_tiny")
    save_pretrained(model, proc, d)
    return d


@pytest.fixture
def register_reward(monkeypatch):
    """``register_reward(name, builder)``: a REWARDS entry for this test only (registries are global;
    tests that walk every registered reward must not see another test's)."""
    from vlrl.rewards.base import REWARDS

    def add(name, builder):
        monkeypatch.setitem(REWARDS._builders, name, builder)
        monkeypatch.setitem(REWARDS._origin, name, "tests")

    return add


def evaluated_stage(model_dir: Path, out: Path, sources: list[str], max_new_tokens: int) -> Path:
    """A copy of ``model_dir`` at ``out`` as a stage leaves it: its held-out evaluation in ``eval/`` and a
    ``config.yaml`` naming the settings of that evaluation (what ``stage_evaluation`` looks for)."""
    import shutil

    import yaml

    from vlrl.eval import heldout
    from vlrl.models import load_pretrained

    shutil.copytree(model_dir, out)
    model, proc = load_pretrained(out)
    heldout.evaluate_held_out(model, proc, sources, max_new_tokens, out / "eval", "Warm-up")
    (out / "config.yaml").write_text(yaml.safe_dump({"eval_sources": sources, "eval_max_new_tokens": max_new_tokens}))
    return out
