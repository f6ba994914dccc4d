"""The shipped plugin package (examples/vlrl-conv-encoder) installs like any third-party package and
works end to end: vlrl lists it, a stage trains a model on it, and the saved model reloads and answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

PKG = ROOT / "examples" / "vlrl-conv-encoder"


def run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    out = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict:
    """pip-install the example into a private directory (no network: this venv's setuptools builds it)."""
    target = tmp_path_factory.mktemp("site")
    run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(PKG)], dict(os.environ))
    assert (target / "vlrl_conv_encoder" / "__init__.py").is_file()
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(ROOT)]), "HF_HUB_OFFLINE": "1"}


@pytest.mark.slow
def test_installed_plugin_is_listed_trains_and_reloads(plugin_env, tmp_path):
    listed = run([sys.executable, "-m", "vlrl.cli", "encoders", "list"], plugin_env).stdout
    assert "conv_patch" in listed and "vlrl-conv-encoder" in listed
    out = tmp_path / "align"
    run([sys.executable, "-m", "vlrl.cli", "align", "--config", "configs/tiny/align.yaml",
         "model.encoder.name=conv_patch", "model.encoder.arch=null",
         "model.encoder.kwargs={image_size: 32, patch_size: 8, width: 48}",
         "data.sources=[synth:shapes?n=16&seed=1]", "phases=[{steps: 3}]", "batch_size=4", "trackers=[]",
         "model.tokenizer.build.n_per_task=20", f"output_dir={out}"], plugin_env)
    saved = json.loads((out / "vlm_config.json").read_text())
    assert saved["encoder"]["name"] == "conv_patch" and saved["encoder"]["kwargs"]["width"] == 48
    code = ("from vlrl.inference import Predictor; from vlrl.data.synth import generate; "
            "p = Predictor.load(%r); s = generate('shapes', 1)[0]; "
            "print('N', p.model.encoder.num_tokens, type(p.model.encoder).__name__); "
            "print(repr(p.answer(s.question, s.images, max_new_tokens=4)))")
    shown = run([sys.executable, "-c", code % str(out)], plugin_env).stdout
    assert "N 16 ConvPatchEncoder" in shown
