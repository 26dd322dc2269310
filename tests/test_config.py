"""params.yaml parsing: every bad key or value is a ConfigError that names the key and what is allowed."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import yaml

from faceage.config import (
    AugmentConfig,
    Params,
    PrepareConfig,
    TrainConfig,
    load_params,
    parse_params,
    to_flat_dict,
)
from faceage.errors import ConfigError, FaceageError

REPO = Path(__file__).resolve().parents[1]
PARAMS_YAML = REPO / "params.yaml"


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(PARAMS_YAML.read_text())


def with_value(raw: dict, dotted: str, value: object) -> dict:
    out = copy.deepcopy(raw)
    *parents, last = dotted.split(".")
    node = out
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return out


def config_error(raw: dict) -> str:
    with pytest.raises(ConfigError) as info:
        parse_params(raw)
    return str(info.value)


def test_load_repo_params(raw: dict) -> None:
    params = load_params(PARAMS_YAML)
    assert isinstance(params, Params)
    assert isinstance(params.prepare, PrepareConfig)
    assert isinstance(params.train.augment, AugmentConfig)
    # values come from the file, not from the defaults
    assert params.prepare.image_size == raw["prepare"]["image_size"]
    assert params.train.learning_rate == pytest.approx(raw["train"]["learning_rate"])
    assert params.train.backbone == raw["train"]["backbone"]
    assert params.train.augment.flip is raw["train"]["augment"]["flip"]
    assert params.evaluate.legal_age == raw["evaluate"]["legal_age"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.train.epochs = 1  # type: ignore[misc]


@pytest.mark.parametrize("name", ["params.yaml", "profiles/full-size.yaml", "profiles/small-cpu.yaml"])
def test_params_files_set_every_key_so_no_value_comes_from_a_code_default(name: str) -> None:
    """params.yaml is where the defaults are read (and what DVC tracks): every key the code knows is written there."""
    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / name).read_text())
    def keys(node: dict, prefix: str = "") -> set[str]:
        return set().union(*[keys(v, f"{prefix}{k}.") if isinstance(v, dict) and k != "space" else {f"{prefix}{k}"}
                             for k, v in node.items()])

    assert keys(raw) == set(to_flat_dict(Params()))


def test_code_defaults_are_the_params_yaml_defaults() -> None:
    """One set of defaults: a config built in code (TrainConfig(), a partial params file) trains what params.yaml says."""
    shipped, code = to_flat_dict(load_params(PARAMS_YAML)), to_flat_dict(Params())
    assert {k: v for k, v in shipped.items() if code[k] != v} == {}


def test_missing_params_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "params.yaml")


def test_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("prepare: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(path)


def test_empty_sections_give_defaults() -> None:
    params = parse_params({"prepare": None, "train": {}, "evaluate": {}})
    assert params == Params()


def test_int_widens_to_float(raw: dict) -> None:
    params = parse_params(with_value(raw, "train.learning_rate", 1))
    assert params.train.learning_rate == 1.0 and isinstance(params.train.learning_rate, float)


def test_unknown_key_names_key_and_lists_allowed(raw: dict) -> None:
    msg = config_error(with_value(raw, "train.learnig_rate", 0.01))
    assert msg.startswith("train.learnig_rate")
    assert "unknown key" in msg
    for key in ("learning_rate", "backbone", "epochs", "batch_size", "augment"):
        assert key in msg


def test_unknown_nested_key(raw: dict) -> None:
    msg = config_error(with_value(raw, "train.augment.flp", True))
    assert msg.startswith("train.augment.flp") and "flip" in msg


def test_negative_learning_rate(raw: dict) -> None:
    msg = config_error(with_value(raw, "train.learning_rate", -0.001))
    assert msg.startswith("train.learning_rate") and "out of range" in msg and "> 0" in msg


def test_zero_learning_rate_is_rejected(raw: dict) -> None:
    assert config_error(with_value(raw, "train.learning_rate", 0)).startswith("train.learning_rate")


def test_image_size_too_small(raw: dict) -> None:
    msg = config_error(with_value(raw, "prepare.image_size", 16))
    assert msg.startswith("prepare.image_size") and "16" in msg and ">= 32" in msg
    assert parse_params(with_value(raw, "prepare.image_size", 32)).prepare.image_size == 32


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("train.backbone", "vgg16", ["resnet50", "mobilenet_v3_small", "tiny_cnn"]),
        ("train.loss", "l1", ["mse", "mae", "huber"]),
        ("prepare.layout", "imdb", ["auto", "course", "appa", "utkface"]),
        ("prepare.target", "both", ["real", "apparent"]),
        ("train.precision", "float16", ["auto", "float32", "mixed_bfloat16"]),
    ],
)
def test_unknown_choice_lists_allowed_values(raw: dict, key: str, value: str, allowed: list[str]) -> None:
    msg = config_error(with_value(raw, key, value))
    assert msg.startswith(key) and repr(value) in msg
    for choice in allowed:
        assert choice in msg


@pytest.mark.parametrize("key", ["train.jit_compile", "evaluate.tta_flip", "train.augment.flip"])
@pytest.mark.parametrize("value", ["true", "false", 1, 0])
def test_bool_must_be_a_real_bool(raw: dict, key: str, value: object) -> None:
    msg = config_error(with_value(raw, key, value))
    assert msg.startswith(key) and "true or false" in msg


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("train.epochs", 12.5, "expected an integer"),
        ("train.epochs", True, "expected an integer"),
        ("train.epochs", "12", "expected an integer"),
        ("train.epochs", 0, "out of range"),
        ("train.batch_size", 0, "out of range"),
        ("train.learning_rate", "0.001", "expected a number"),
        ("train.learning_rate", float("nan"), "expected a number"),
        ("train.augment.rotation", 0.9, "out of range"),
        ("prepare.val_fraction", 0.0, "out of range"),
        ("prepare.max_bad_fraction", 1.5, "out of range"),
        ("train.backbone", 50, "expected a string"),
        ("evaluate.legal_age", 0, "out of range"),
        ("evaluate.youngest_minor", 18, "must be below evaluate.legal_age"),
    ],
)
def test_bad_values(raw: dict, key: str, value: object, expected: str) -> None:
    msg = config_error(with_value(raw, key, value))
    assert msg.startswith(key) and expected in msg


def test_weights_may_be_null_or_a_path(raw: dict) -> None:
    assert parse_params(with_value(raw, "train.weights", None)).train.weights is None
    assert parse_params(with_value(raw, "train.weights", "w.h5")).train.weights == "w.h5"
    assert config_error(with_value(raw, "train.weights", 3)).startswith("train.weights")


def test_unknown_top_level_section(raw: dict) -> None:
    bad = copy.deepcopy(raw)
    bad["trian"] = {"epochs": 3}
    msg = config_error(bad)
    assert msg.startswith("trian") and "unknown section" in msg
    for section in ("prepare", "train", "evaluate"):
        assert section in msg


def test_tune_section_is_parsed(raw: dict) -> None:
    ok = copy.deepcopy(raw)
    ok["tune"] = {"n_trials": 5}
    parsed = parse_params(ok)
    assert parsed.train == parse_params(raw).train
    assert parsed.tune.n_trials == 5


def test_section_must_be_a_mapping(raw: dict) -> None:
    bad = copy.deepcopy(raw)
    bad["train"] = [1, 2]
    assert config_error(bad).startswith("train")
    with pytest.raises(ConfigError):
        parse_params(["not", "a", "mapping"])


def test_val_plus_test_fraction_too_large(raw: dict) -> None:
    bad = with_value(with_value(raw, "prepare.val_fraction", 0.45), "prepare.test_fraction", 0.45)
    msg = config_error(bad)
    assert "prepare.val_fraction" in msg and "prepare.test_fraction" in msg and "training" in msg
    ok = with_value(with_value(raw, "prepare.val_fraction", 0.4), "prepare.test_fraction", 0.4)
    assert parse_params(ok).prepare.val_fraction == pytest.approx(0.4)


def test_config_error_is_a_faceage_error() -> None:
    assert issubclass(ConfigError, FaceageError)


def test_to_flat_dict() -> None:
    flat = to_flat_dict(TrainConfig())
    assert flat["augment.flip"] is True
    assert flat["learning_rate"] == pytest.approx(1e-3)
    assert "augment" not in flat
    nested = to_flat_dict(Params())
    assert nested["train.augment.zoom"] == pytest.approx(AugmentConfig().zoom)
    assert nested["prepare.image_size"] == PrepareConfig().image_size


def test_full_size_profile_parses() -> None:
    """profiles/full-size.yaml stays a valid params file as params.yaml evolves."""
    from faceage.config import load_params

    profile = load_params(Path(__file__).resolve().parents[1] / "profiles" / "full-size.yaml")
    assert profile.prepare.image_size == 224 and profile.train.weights


def test_small_cpu_profile_is_the_default_but_the_backbone_and_a_time_budget() -> None:
    """profiles/small-cpu.yaml changes only what BENCHMARKS.md measured: the backbone, a 60-minute budget, its cap."""
    profile = to_flat_dict(load_params(REPO / "profiles" / "small-cpu.yaml"))
    default = to_flat_dict(load_params(PARAMS_YAML))
    assert {k: v for k, v in profile.items() if default[k] != v} == {
        "train.backbone": "mobilenet_v3_small", "train.time_budget_minutes": 60.0, "train.epochs": 200}


def test_augment_off_turns_every_augmentation_off() -> None:
    off = AugmentConfig.off()
    assert not off.flip
    assert all(value == 0 for name, value in dataclasses.asdict(off).items() if name != "flip")
