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
CHANCE_HEADS = ("dex", "gaussian")   # heads that say how sure they are: policy.decide_on chance works with them


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
    erase: float = field(default=0.5, metadata=_range(0.0, 1.0))         # chance of blotting out a patch (random erasing)
    mixup: float = field(default=0.0, metadata=_range(0.0, 10.0))        # mixup Beta(a, a) of faces and ages; 0 = off
    label_jitter: float = field(default=0.0, metadata=_range(0.0, 10.0))  # std of noise added to training ages, years

    @classmethod
    def off(cls) -> AugmentConfig:
        """No augmentation at all (the defaults turn some on): smoke runs, tests and throughput baselines."""
        return cls(flip=False, rotation=0.0, zoom=0.0, shift=0.0, brightness=0.0, contrast=0.0, erase=0.0,
                   mixup=0.0, label_jitter=0.0)


@dataclass(frozen=True)
class TrainConfig:
    backbone: str = field(default="resnet50", metadata=_choice("resnet50", "mobilenet_v3_small", "tiny_cnn"))
    weights: str | None = None
    head: str = field(default="regression", metadata=_choice("regression", "dex", "gaussian"))
    epochs: int = field(default=12, metadata=_range(1, 10_000))
    time_budget_minutes: float = field(default=0.0, metadata=_range(0.0, 100_000.0))
    batch_size: int = field(default=32, metadata=_range(1, 4096))
    learning_rate: float = field(default=1e-3, metadata=_range(0.0, 10.0, lo_open=True))
    schedule: str = field(default="cosine", metadata=_choice("constant", "cosine"))
    warmup_epochs: int = field(default=1, metadata=_range(0, 10_000))
    loss: str = field(default="mse", metadata=_choice("mse", "mae", "huber"))  # on the age (regression, gaussian heads)
    # gaussian head: does the spread's likelihood also train the shared backbone (true), or only its own layer (false)?
    spread_trains_backbone: bool = True
    weight_ages_10_30: float = field(default=1.0, metadata=_range(0.0, 100.0, lo_open=True))  # loss weight of faces aged 10-30
    early_stopping_patience: int = field(default=0, metadata=_range(0, 10_000))
    # auto: mixed_bfloat16 on a GPU or a CPU with native bf16 instructions, float32 elsewhere (faceage.hardware)
    precision: str = field(default="auto", metadata=_choice("auto", "float32", "mixed_bfloat16"))
    jit_compile: bool = False
    seed: int = field(default=42, metadata=_range(0, 2**32 - 1))
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass(frozen=True)
class EvaluateConfig:
    legal_age: int = field(default=18, metadata=_range(1, 120))
    youngest_minor: int = field(default=13, metadata=_range(0, 119))  # ID-check rates count minors from this age
    id_check_threshold: float = field(default=25, metadata=_range(1, 120))
    tta_flip: bool = True
    batch_size: int = field(default=64, metadata=_range(1, 4096))


@dataclass(frozen=True)
class PolicyConfig:
    # The calibrated ID-check rule may let at most this share of minors through unasked (on validation).
    max_minors_not_asked: float = field(default=0.02, metadata=_range(0.0, 1.0))
    # age: ask when the estimated age is under T; chance: ask when P(age < legal age) >= p (train.head: dex or gaussian)
    decide_on: str = field(default="age", metadata=_choice("age", "chance"))


@dataclass(frozen=True)
class PredictConfig:
    detect: bool = True                      # find faces in the photo (OpenCV); false: the photo is a face crop
    margin: float = field(default=0.4, metadata=_range(0.0, 2.0))   # added around the face box, each side
    min_face: int = field(default=24, metadata=_range(8, 4096))      # smallest face to detect, pixels


def _default_space() -> dict[str, dict[str, Any]]:
    return {
        "train.learning_rate": {"low": 1e-4, "high": 3e-3, "log": True},
        "train.augment.flip": {"choices": [True, False]},
        "train.augment.rotation": {"low": 0.0, "high": 0.1},
        "train.augment.zoom": {"low": 0.0, "high": 0.2},
        "train.augment.shift": {"low": 0.0, "high": 0.1},
        "train.augment.brightness": {"low": 0.0, "high": 0.3},
        "train.augment.contrast": {"low": 0.0, "high": 0.3},
    }


@dataclass(frozen=True)
class TuneConfig:
    n_trials: int = field(default=20, metadata=_range(1, 100_000))
    timeout_minutes: float = field(default=0.0, metadata=_range(0.0, 1e7))   # 0 = no limit
    epochs: int = field(default=6, metadata=_range(1, 10_000))               # per trial (the pruner may stop it earlier)
    sampler_seed: int = field(default=42, metadata=_range(0, 2**32 - 1))
    pruner: str = field(default="median", metadata=_choice("none", "median", "hyperband"))
    storage: str = "sqlite:///results/tune/optuna.db"
    study_name: str = "faceage"
    heartbeat_seconds: int = field(default=30, metadata=_range(1, 86_400))
    space: dict[str, Any] = field(default_factory=_default_space)


@dataclass(frozen=True)
class Params:
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)


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
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return value
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
    known = [f.name for f in dataclasses.fields(Params)]
    for key in raw:
        if key not in known:
            raise ConfigError(f"{key}: unknown section; allowed sections: {', '.join(known)}")
    params = Params(**{name: parse_section(typing.get_type_hints(Params)[name], raw.get(name), name)
                       for name in known})
    if params.evaluate.youngest_minor >= params.evaluate.legal_age:
        raise ConfigError(f"evaluate.youngest_minor: {params.evaluate.youngest_minor} must be below evaluate.legal_age "
                          f"({params.evaluate.legal_age})")
    if params.policy.decide_on == "chance" and params.train.head not in CHANCE_HEADS:
        raise ConfigError("policy.decide_on: chance needs a model that says how sure it is (train.head: dex or "
                          f"gaussian); train.head is {params.train.head!r}. Set policy.decide_on: age or another head")
    p = params.prepare
    if p.val_fraction + p.test_fraction >= 0.9:
        raise ConfigError("prepare.val_fraction + prepare.test_fraction: must leave at least 10% for training")
    return params


def load_params(path: Path = PARAMS_FILE) -> Params:
    """Read and check params.yaml. Missing file or bad YAML is a ConfigError."""
    if not path.exists():
        raise ConfigError(f"{path}: not found; run from the repository root (where params.yaml lives)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    return parse_params(raw)


def with_overrides(cfg: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """A copy of `cfg` with dotted keys ("train.augment.zoom": 0.2) replaced, checked like params.yaml."""
    raw = dataclasses.asdict(cfg)
    for key, value in overrides.items():
        parts = key.split(".")
        if parts[0] != "train" or len(parts) < 2:
            raise ConfigError(f"{key}: only train.* keys can be overridden here")
        node = raw
        for part in parts[1:-1]:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"{key}: unknown key; {part!r} is not a section of train")
            node = node[part]
        if parts[-1] not in node:
            raise ConfigError(f"{key}: unknown key; allowed keys: {', '.join(node)}")
        node[parts[-1]] = value
    return parse_section(TrainConfig, raw, "train")


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
