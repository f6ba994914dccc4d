"""Loading a model directory never runs code from it nor follows paths or hub ids written in its config
(issue 18, point 2): a crafted vlm_config.json that points the LLM (or the vision tower) at a folder of
custom code with trust_remote_code is refused with a message, and the code never runs."""

import json
import shutil

import pytest

from vlrl.models import load_pretrained

CODE = '''
import pathlib
pathlib.Path(__file__).with_name("RAN").write_text("the model folder's code ran")
from transformers import PretrainedConfig
class EvilConfig(PretrainedConfig):
    model_type = "evil"
'''


@pytest.fixture
def crafted(saved_tiny, tmp_path):
    """A copy of a saved tiny model whose config names a folder of custom code."""
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "configuration_evil.py").write_text(CODE)
    (evil / "config.json").write_text(json.dumps({"model_type": "evil", "auto_map": {
        "AutoConfig": "configuration_evil.EvilConfig", "AutoModelForCausalLM": "configuration_evil.EvilConfig"}}))
    model = tmp_path / "model"
    shutil.copytree(saved_tiny, model)
    return model, evil


def edit(model, change):
    cfg = json.loads((model / "vlm_config.json").read_text())
    change(cfg)
    (model / "vlm_config.json").write_text(json.dumps(cfg))


def test_an_llm_path_with_trust_remote_code_is_refused_and_never_run(crafted, capsys):
    from vlrl.cli import main as cli

    model, evil = crafted
    edit(model, lambda c: c.update(llm={**c["llm"], "path": str(evil), "config": None,
                                        "kwargs": {"trust_remote_code": True}}))
    with pytest.raises(ValueError, match=r"refusing to load .*names llm.path .*passes trust_remote_code in llm.kwargs"):
        load_pretrained(model)
    assert cli(["infer", "--model", str(model), "--question", "What is 1 + 2?"]) == 2
    assert "vlrl: error: refusing to load" in capsys.readouterr().err
    assert not (evil / "RAN").exists()


def test_a_vision_tower_path_is_refused(crafted):
    model, evil = crafted
    edit(model, lambda c: c.update(encoder={**c["encoder"], "name": "hf_vision", "arch": str(evil),
                                            "kwargs": {"trust_remote_code": True}}))
    with pytest.raises(ValueError, match=r"names encoder.arch .*evil"):
        load_pretrained(model)
    edit(model, lambda c: c.update(encoder={**c["encoder"], "name": "open_clip", "arch": "hf-hub:someone/tower",
                                            "kwargs": {}, "pretrained": "laion2b"}))
    with pytest.raises(ValueError, match=r"names encoder.pretrained 'laion2b'.*names encoder.arch 'hf-hub:"):
        load_pretrained(model)
    assert not (evil / "RAN").exists()


def test_an_untouched_saved_model_loads(saved_tiny):
    model, _ = load_pretrained(saved_tiny)
    assert sum(p.numel() for p in model.parameters()) > 0
