"""Typed parameters: params.yaml is parsed once, here, into frozen dataclasses that are passed down.

Every key is checked: unknown keys, wrong types and out-of-range values raise ConfigError with one line
that names the key and what is allowed, before any work starts.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from faceage.errors import ConfigError

PARAMS_FILE = Path("params.yaml")


def _choice(*values: str) -> dict[str, Any]:
    return {"choices": values}


def _range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False) -> dict[str, Any]:
    return {"min": lo, "max": hi, "lo_open": lo_open}


@dataclass(frozen=True)
class PrepareConfig:
    data_dir: str = "data"
    layout: str = field(default="auto", metadata=_choice("auto", "course", "appa", "utkface"))
    target: str = field(default="real", metadata=_choice("real", "apparent"))
    image_size: int = field(default=64, metadata=_range(32, 1024))
    val_fraction: float = field(default=0.15, metadata=_range(0.0, 0.5, lo_open=True))
    test_fraction: float = field(default=0.15, metadata=_range(0.0, 0.5, lo_open=True))
    max_bad_fraction: float = field(default=0.05, metadata=_range(0.0, 1.0))
    seed: int = field(default=42, metadata=_range(0, 2**32 - 1))


@dataclass(frozen=True)
class AugmentConfig:
    flip: bool = True
    rotation: float = field(default=0.04, metadata=_range(0.0, 0.5))
    zoom: float = field(default=0.1, metadata=_range(0.0, 0.9))
    shift: float = field(default=0.05, metadata=_range(0.0, 0.5))
    brightness: float = field(default=0.0, metadata=_range(0.0, 1.0))
    contrast: float = field(default=0.0, metadata=_range(0.0, 1.0))


@dataclass(frozen=True)
class TrainConfig:
    backbone: str = field(default="resnet50", metadata=_choice("resnet50", "mobilenet_v3_small"))
    weights: str | None = None
    head: str = field(default="regression", metadata=_choice("regression"))
    epochs: int = field(default=12, metadata=_range(1, 10_000))
    time_budget_minutes: float = field(default=0.0, metadata=_range(0.0, 100_000.0))
    batch_size: int = field(default=32, metadata=_range(1, 4096))
    learning_rate: float = field(default=1e-3, metadata=_range(0.0, 10.0, lo_open=True))
    schedule: str = field(default="cosine", metadata=_choice("constant", "cosine"))
    warmup_epochs: int = field(default=1, metadata=_range(0, 10_000))
    loss: str = field(default="mse", metadata=_choice("mse", "mae", "huber"))
    early_stopping_patience: int = field(default=0, metadata=_range(0, 10_000))
    precision: str = field(default="float32", metadata=_choice("float32", "mixed_bfloat16"))
    jit_compile: bool = False
    seed: int = field(default=42, metadata=_range(0, 2**32 - 1))
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass(frozen=True)
class EvaluateConfig:
    legal_age: int = field(default=18, metadata=_range(1, 120))
    id_check_threshold: float = field(default=25, metadata=_range(1, 120))
    tta_flip: bool = False
    batch_size: int = field(default=64, metadata=_range(1, 4096))


@dataclass(frozen=True)
class Params:
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, value: Any, tp: Any, meta: typing.Mapping[str, Any]) -> Any:
    """Check one value against its annotated type and metadata; return it (ints widen to floats)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(key, value, args[0], meta)
    if dataclasses.is_dataclass(tp):
        return parse_section(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        value = float(value)
    elif tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key}: {value!r} is not allowed; choose one of: {', '.join(choices)}")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and (value < lo or (meta.get("lo_open") and value == lo)):
        bound = f"> {lo}" if meta.get("lo_open") else f">= {lo}"
        raise ConfigError(f"{key}: {value!r} is out of range; it must be {bound}" + (f" and <= {hi}" if hi is not None else ""))
    if hi is not None and value > hi:
        raise ConfigError(f"{key}: {value!r} is out of range; it must be <= {hi}")
    return value


def parse_section(cls: type, raw: Any, prefix: str) -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown keys and bad values."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix}: expected a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{prefix}.{unknown[0]}: unknown key; allowed keys: {', '.join(fields)}")
    values = {name: _coerce(f"{prefix}.{name}", raw[name], hints[name], fields[name].metadata)
              for name in fields if name in raw}
    return cls(**values)


def parse_params(raw: Any) -> Params:
    """Parse the whole params mapping (all sections); cross-field checks live here."""
    if not isinstance(raw, dict):
        raise ConfigError("params: expected a mapping with sections prepare, train, evaluate")
    known = {f.name for f in dataclasses.fields(Params)}
    extra = {k: v for k, v in raw.items() if k not in known}
    params = Params(**{name: parse_section(typing.get_type_hints(Params)[name], raw.get(name), name)
                       for name in known})
    for key in extra:
        # Other tools may keep their own sections in params.yaml (e.g. tune); only top-level names are
        # reserved, so a typo in a stage name is still caught here.
        if key not in EXTRA_SECTIONS:
            raise ConfigError(f"{key}: unknown section; allowed sections: {', '.join(sorted(known | EXTRA_SECTIONS))}")
    p = params.prepare
    if p.val_fraction + p.test_fraction >= 0.9:
        raise ConfigError("prepare.val_fraction + prepare.test_fraction: must leave at least 10% for training")
    return params


EXTRA_SECTIONS: frozenset[str] = frozenset({"tune"})


def load_params(path: Path = PARAMS_FILE) -> Params:
    """Read and check params.yaml. Missing file or bad YAML is a ConfigError."""
    if not path.exists():
        raise ConfigError(f"{path}: not found; run from the repository root (where params.yaml lives)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    return parse_params(raw)


def to_flat_dict(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a config dataclass to {"train.augment.flip": True, ...} for logging."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.update(to_flat_dict(value, key + "."))
        else:
            out[key] = value
    return out
