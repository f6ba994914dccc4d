from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vlrl.config import ConfigError, ModelConfig, load_config
from vlrl.stages import STAGES, ModelFile

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Top:
    model: ModelConfig = field(default_factory=ModelConfig)
    steps: int = 3


def test_yaml_then_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("steps: 7\nmodel: {max_length: 99}\n")
    (tmp_path / "top.yaml").write_text("include: base.yaml\nsteps: 8\n")
    cfg = load_config(Top, tmp_path / "top.yaml", ["model.encoder.arch={layers: 2}"])
    assert cfg.steps == 8 and cfg.model.max_length == 99 and cfg.model.encoder.arch == {"layers": 2}
    assert load_config(Top, tmp_path / "top.yaml", ["steps=1"]).steps == 1


def test_unknown_key_names_key_and_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  encoder:\n    nmae: open_clip\n")
    with pytest.raises(ConfigError) as e:
        load_config(Top, bad)
    assert "nmae" in str(e.value) and str(bad) in str(e.value) and "model.encoder.nmae" in str(e.value)


def test_wrong_type_and_bad_override_are_errors():
    with pytest.raises(ConfigError, match="steps"):
        load_config(Top, None, ["steps=many"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(Top, None, ["steps"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(Top, "/nonexistent.yaml")


def schema_for(path: Path):
    if path.stem == "model":
        return ModelFile
    stem = {"warmup_short": "warmup"}.get(path.stem, path.stem)
    import importlib
    return getattr(importlib.import_module(STAGES[stem].module), STAGES[stem].schema)


def test_every_yaml_under_configs_loads():
    files = sorted((ROOT / "configs").rglob("*.yaml"))
    assert len(files) >= 3
    for f in files:
        if "accelerate" in f.parts:
            continue
        cfg = load_config(schema_for(f), f)
        assert cfg is not None, f


def test_accelerate_configs_are_complete():
    import yaml

    files = sorted((ROOT / "configs" / "accelerate").glob("*.yaml"))
    assert {f.stem for f in files} >= {"ddp", "multinode_ddp", "fsdp", "zero2", "zero3", "cpu2"}
    for f in files:
        cfg = yaml.safe_load(f.read_text())
        assert cfg["distributed_type"] in ("MULTI_GPU", "FSDP", "DEEPSPEED"), f
        assert cfg["num_processes"] >= 2 and cfg["num_machines"] >= 1, f
        if cfg["distributed_type"] == "DEEPSPEED":
            assert cfg["deepspeed_config"]["zero_stage"] in (2, 3), f


def test_save_config_from_several_writers_at_once(tmp_path):
    """Every process of an `accelerate launch` stage writes the same config.yaml before the process group
    exists. With one shared temporary name, a writer's rename found the file already moved by another
    (FileNotFoundError: the CI failure of the 2-process long2short test). Each writer now has its own."""
    import threading

    from vlrl.config import save_config

    path, errors = tmp_path / "run" / "config.yaml", []

    def write() -> None:
        try:
            for steps in range(100):
                save_config(Top(steps=steps), path)
        except Exception as e:  # noqa: BLE001 (collected for the assertion)
            errors.append(e)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:1]
    assert load_config(Top, path).steps == 99
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]  # no temporary file left behind
