"""Typed configs: dataclass schema -> YAML -> CLI ``a.b=c`` overrides -> a real dataclass instance.

Every stage defines one top-level dataclass next to its ``main``; the component configs it nests are
here. Loading goes through OmegaConf's structured configs, so an unknown key or a wrong type is an error
that names the key and the file it came from. A YAML file may start with ``include: [other.yaml, ...]``
(paths relative to the including file); included files are merged first, the file's own keys win.

Example::

    cfg = load_config(WarmupConfig, "configs/tiny/warmup.yaml", ["optim.lr=1e-3", "steps=20"])
    save_config(cfg, "runs/x/warmup/config.yaml")
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Type, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

C = TypeVar("C")


class ConfigError(ValueError):
    """A config that cannot be loaded: names the key and the file (or 'command line')."""


# ----------------------------------------------------------------------------- component configs


@dataclass
class EncoderConfig:
    """Vision encoder. ``name`` picks the ENCODERS builder; architecture and weights are separate fields.

    - ``arch``: an architecture name (open_clip: "ViT-B-16"; hf_vision: a hub id or local path) or an inline
      architecture dict (open_clip: a ``vision_cfg`` dict; hf_vision: a transformers config dict with
      ``model_type`` such as ``clip_vision_model`` or ``siglip_vision_model``).
    - ``pretrained``: open_clip tag, local weights file / directory, hub id, or null for random init.
    - ``feature_layer``: which transformer block's output gives the patch tokens (-1 = last, -2 = LLaVA's).
    """

    name: str = "open_clip"
    arch: Any = "ViT-B-16"
    pretrained: Optional[str] = None
    feature_layer: int = -1
    freeze: bool = False
    kwargs: Dict[str, Any] = field(default_factory=dict)


@dataclass
class ProjectorConfig:
    """Projector from encoder features to LLM embeddings. ``name``: linear | mlp | pixel_shuffle | plugins."""

    name: str = "mlp"
    kwargs: Dict[str, Any] = field(default_factory=dict)


@dataclass
class LLMConfig:
    """Causal LLM: ``path`` (local dir or hub id of any AutoModelForCausalLM) or ``config`` (a transformers
    config dict with ``model_type``, random init). Exactly one of the two."""

    path: Optional[str] = None
    config: Optional[Dict[str, Any]] = None
    dtype: str = "float32"
    attn_implementation: Optional[str] = None
    kwargs: Dict[str, Any] = field(default_factory=dict)


@dataclass
class TokenizerConfig:
    """Tokenizer: ``path`` (local dir or hub id; null = the LLM's path) or ``build`` (a spec for a tokenizer
    trained locally on the synthetic corpus: {vocab_size, n_per_task, seed}). ``image_token`` is added
    to the vocabulary when missing."""

    path: Optional[str] = None
    build: Optional[Dict[str, Any]] = None
    image_token: str = "<image>"


@dataclass
class LoRAConfig:
    """Low-rank adapters (peft) on the linear layers named ``target_modules`` inside ``modules`` (of
    encoder / projector / llm): only the adapters of those modules train, and saved models hold merged
    full weights."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: List[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    modules: List[str] = field(default_factory=lambda: ["llm"])


@dataclass
class ModelConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    max_length: int = 512
    # recompute the LLM's and the vision tower's block activations in the backward pass (less memory)
    gradient_checkpointing: bool = False
    lora: Optional[LoRAConfig] = None  # adapters instead of full fine-tuning (vlrl.models.lora)


@dataclass
class DataConfig:
    """Where samples come from. ``sources`` are JSONL files, ``synth:TASK`` specs
    (``synth:shapes?n=200&seed=1&difficulty=1-3``) generated on the spot, or Hugging Face datasets: a local
    dataset directory, an ``hf:PATH_OR_ID?split=..&adapter=..`` string or a mapping with ``path``,
    ``split``, ``config``, ``adapter``, ``columns``, ``where``, ``limit`` (:mod:`vlrl.data.sources`)."""

    sources: List[Any] = field(default_factory=list)
    on_bad_row: str = "skip"  # skip (counted and reported) | error
    system_prompt: Optional[str] = None


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: List[float] = field(default_factory=lambda: [0.9, 0.95])
    warmup_steps: int = 0
    schedule: str = "cosine"  # cosine | constant | linear
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    grad_accum: int = 1


# ----------------------------------------------------------------------------- loading


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[str, dict]]:
    """Return [(origin, mapping)] for ``path`` and its includes, includes first."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: include cycle through {' -> '.join(str(p) for p in seen)}")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    out: list[tuple[str, dict]] = []
    includes = data.pop("include", []) or []
    for inc in [includes] if isinstance(includes, str) else includes:
        out += _read_yaml(path.parent / inc, seen + (path,))
    out.append((str(path), data))
    return out


def _merge(base: Any, update: Any, origin: str) -> Any:
    try:
        return OmegaConf.merge(base, update)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        msg = str(e).splitlines()[0]
        where = f" (key '{key}')" if key else ""
        raise ConfigError(f"{origin}: {msg}{where}") from None


def load_config(schema: Type[C], path: str | Path | None = None, overrides: Sequence[str] = ()) -> C:
    """Build a ``schema`` instance from defaults, then ``path`` (with includes), then ``overrides``.

    Raises:
        ConfigError: unknown key, wrong type, bad YAML or override syntax; the message names key and file.
    """
    cfg = OmegaConf.structured(schema)
    if path is not None:
        for origin, data in _read_yaml(Path(path)):
            cfg = _merge(cfg, OmegaConf.create(data), origin)
    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"command line: override '{ov}' is not of the form key=value (e.g. optim.lr=1e-4)")
        try:
            dot = OmegaConf.from_dotlist([ov])
        except OmegaConfBaseException as e:
            raise ConfigError(f"command line: cannot parse override '{ov}': {e}") from None
        cfg = _merge(cfg, dot, f"command line override '{ov}'")
    try:
        return OmegaConf.to_object(cfg)  # type: ignore[return-value]
    except OmegaConfBaseException as e:
        raise ConfigError(f"{path or 'defaults'}: {str(e).splitlines()[0]}") from None


def to_dict(cfg: Any) -> dict:
    """A dataclass config as a plain dict (for JSON / YAML)."""
    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)


def from_dict(schema: Type[C], data: dict, origin: str = "dict") -> C:
    """Validate a plain dict against ``schema`` (same errors as :func:`load_config`)."""
    cfg = _merge(OmegaConf.structured(schema), OmegaConf.create(data), origin)
    return OmegaConf.to_object(cfg)  # type: ignore[return-value]


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically). Safe when several processes write the same file
    (a stage started under ``accelerate launch`` before the process group exists): each writes its own
    temporary file, then renames it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    os.chmod(tmp, 0o644)  # mkstemp makes it private
    os.replace(tmp, path)
