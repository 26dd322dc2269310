"""The CLI: user mistakes end with one line and exit code 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from faceage.cli import app

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def params_with(tmp_path: Path, section: str, **values) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params[section].update(values)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def run(*args: str):
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output
    return result


@pytest.mark.parametrize(("section", "values", "message"), [
    ("train", {"learnig_rate": 0.1}, "train.learnig_rate: unknown key"),
    ("train", {"learning_rate": -0.1}, "train.learning_rate: -0.1 is out of range"),
    ("prepare", {"image_size": 16}, "prepare.image_size: 16 is out of range"),
    ("train", {"backbone": "vgg"}, "choose one of: resnet50, mobilenet_v3_small"),
    ("train", {"loss": "l3"}, "choose one of: mse, mae, huber"),
])
def test_bad_params_fail_with_one_line_naming_the_key(tmp_path: Path, section: str, values: dict, message: str) -> None:
    result = run("prepare", "--params", str(params_with(tmp_path, section, **values)))
    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_missing_data_says_how_to_get_it(tmp_path: Path) -> None:
    result = run("prepare", "--params", str(params_with(tmp_path, "prepare", data_dir=str(tmp_path / "none"))))
    assert result.exit_code == 2
    assert "make demo" in result.output and "dvc pull" in result.output


def test_evaluate_without_a_model_says_to_train_first(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    result = run("evaluate", "--params", str(REPO / "params.yaml"), "--data", str(tmp_path / "data"),
                 "--model", str(tmp_path / "missing.keras"))
    assert result.exit_code == 2
    assert "no trained model" in result.output


def test_demo_data_writes_once_and_keeps_existing_data(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    first = run("demo-data", "--out", str(out), "--n", "5")
    assert first.exit_code == 0 and len(list((out / "final_files").iterdir())) == 5
    second = run("demo-data", "--out", str(out), "--n", "7")
    assert second.exit_code == 0 and "nothing to do" in second.output
    assert len(list((out / "final_files").iterdir())) == 5
