"""`faceage predict` on real faces (../shared), a non-face image and a corrupt file; the served pyfunc in-process."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from faceage.cli import app
from faceage.config import AugmentConfig, PredictConfig, TrainConfig
from faceage.data.images import load_face
from faceage.faces import detect_boxes
from faceage.inference import estimate, predict_ages
from faceage.model import build_model
from faceage.policy import Policy

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "utkface-sample" / "images"
SIZE = 32
NO_AUG = AugmentConfig.off()
pytestmark = pytest.mark.xdist_group("predict")  # one worker: the module-scoped model is built once


@pytest.fixture(scope="module")
def faces() -> list[Path]:
    if not SHARED.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{SHARED} is missing")
        pytest.skip("shared UTKFace sample not found")
    return sorted(SHARED.iterdir())[::400][:6]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An (untrained) model and a calibrated rule saved where predict and the pyfunc look for them."""
    root = tmp_path_factory.mktemp("model")
    keras.utils.set_random_seed(0)
    model = build_model(TrainConfig(augment=NO_AUG), SIZE, 30.0)
    model.save(root / "model.keras")
    Policy(threshold=27.5, legal_age=18, max_minors_not_asked=0.02, met_on_val=True, val_minors_not_asked=0.0,
           val_adults_asked=0.3, val_adults_25plus_asked=0.2, val_n_minors=10).save(root / "policy.json")
    return root


def invoke(model_dir: Path, *args: str):
    return CliRunner().invoke(app, ["predict", "--params", str(REPO / "params.yaml"), "--model", str(model_dir / "model.keras"),
                                    "--policy", str(model_dir / "policy.json"), *args])


def test_detector_finds_the_face_in_real_chips(faces: list[Path]) -> None:
    from faceage.data.images import open_rgb

    for path in faces:
        boxes = detect_boxes(open_rgb(path)[0])
        assert boxes, path.name
        x, y, w, h = boxes[0]  # the largest comes first
        assert w > 80 and h > 80 and x + w <= 200 and y + h <= 200  # the face, inside the 200x200 chip


def test_predict_real_faces_as_json_uses_the_saved_rule(faces: list[Path], model_dir: Path) -> None:
    result = invoke(model_dir, "--format", "json", *map(str, faces))
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert "27.5" in body["id_check"]
    rows = body["faces"]
    assert [r["file"] for r in rows] == [str(p) for p in faces]
    for r in rows:
        assert r["status"] == "ok" and r["age"] is not None and r["group"]
        if abs(r["age"] - 27.5) > 0.05:  # the rule uses the unrounded age; the report shows one decimal
            assert r["ask_id"] == (r["age"] < 27.5)


def test_bad_files_are_reported_per_file_and_the_others_go_on(faces: list[Path], model_dir: Path, tmp_path: Path) -> None:
    noise = tmp_path / "landscape.png"
    Image.new("RGB", (160, 120), (90, 160, 220)).save(noise)  # an image without a face
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(faces[0].read_bytes()[:300])
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    result = invoke(model_dir, "--format", "csv", str(faces[0]), str(noise), str(corrupt), str(text), str(tmp_path / "gone.jpg"))
    assert result.exit_code == 1
    rows = {Path(r["file"]).name: r for r in csv.DictReader(io.StringIO(result.stdout))}
    assert rows[faces[0].name]["status"] == "ok"
    assert rows["landscape.png"]["reason"] == "no face found"
    assert "truncated" in rows["broken.jpg"]["reason"]
    assert "not an image" in rows["notes.jpg"]["reason"]
    assert "not found" in rows["gone.jpg"]["reason"]


def test_folders_and_globs_and_the_table_format(faces: list[Path], model_dir: Path, tmp_path: Path) -> None:
    pattern = str(SHARED / (faces[0].name.split("_")[0] + "_*"))
    matches = list(SHARED.glob(faces[0].name.split("_")[0] + "_*"))
    result = invoke(model_dir, pattern)
    assert result.exit_code == 0
    assert "ID check: ask for ID when the estimated age is under 27.5" in result.stdout
    assert result.stdout.count(" no ") + result.stdout.count("ASK ID") == len(matches)  # one decision per face
    for path in faces[:3]:
        (tmp_path / "sub").mkdir(exist_ok=True)
        (tmp_path / "sub" / path.name).write_bytes(path.read_bytes())
    (tmp_path / "sub" / "readme.txt").write_text("not a photo, skipped by the folder search")
    folder = invoke(model_dir, "--format", "json", str(tmp_path), "--no-detect")
    assert folder.exit_code == 0
    assert sorted(Path(r["file"]).name for r in json.loads(folder.stdout)["faces"]) == sorted(p.name for p in faces[:3])


def test_served_pyfunc_matches_the_model_and_rejects_garbage(faces: list[Path], model_dir: Path) -> None:
    """Serving parity: the pyfunc without detection gives the age that the evaluate code path gives."""
    from mlflow.exceptions import MlflowException

    from faceage.serve import FaceAgeService

    class Context:
        artifacts = {"model": str(model_dir / "model.keras"), "policy": str(model_dir / "policy.json")}
        model_config = {**PredictConfig().__dict__, "tta_flip": False}

    service = FaceAgeService()
    service.load_context(Context())
    request = pd.DataFrame({"image": [base64.b64encode(p.read_bytes()).decode() for p in faces[:2]]})
    answer = service.predict(None, request, params={"detect": False})
    expected = predict_ages(keras.saving.load_model(model_dir / "model.keras"),
                            np.stack([load_face(p, SIZE)[0] for p in faces[:2]]))
    np.testing.assert_allclose(answer["age"], expected, atol=0.01)
    assert list(answer["ask_id"]) == list(expected < 27.5)
    detected = service.predict(None, request.iloc[:1])
    assert detected["box"][0] != f"0,0,200,200"
    assert list(answer["status"]) == ["ok", "ok"]
    for bad, message in (("", "empty"), ("%%%", "not valid base64"), (base64.b64encode(b"hello").decode(), "not an image")):
        with pytest.raises(MlflowException, match=f"image 0: {message}"):
            service.predict(None, pd.DataFrame({"image": [bad]}))
    # One bad photo among good ones loses nothing: the good ones are answered, the bad one says why and asks for ID.
    mixed = service.predict(None, pd.DataFrame({"image": [request["image"][0], "%%%", request["image"][1]]}),
                            params={"detect": False})
    assert list(mixed["status"]) == ["ok", "error", "ok"]
    np.testing.assert_allclose(mixed["age"][[0, 2]], expected, atol=0.01)
    assert np.isnan(mixed["age"][1]) and bool(mixed["ask_id"][1]) and "image 1: not valid base64" in mixed["note"][1]


@pytest.mark.parametrize("head", ["dex", "gaussian"])
def test_a_model_with_a_chance_rule_reports_and_applies_the_chance_of_being_a_minor(
        faces: list[Path], tmp_path: Path, head: str) -> None:
    """predict and the served pyfunc apply the saved chance rule: ask when P(age < 18) >= p."""
    from faceage.serve import FaceAgeService

    keras.utils.set_random_seed(0)
    model = build_model(TrainConfig(backbone="tiny_cnn", head=head, augment=NO_AUG),
                        SIZE, np.array([10.0, 16.0, 30.0, 50.0]))
    model.save(tmp_path / "model.keras")
    # An untrained model gives every face about the prior's P(minor); a p near the median splits them.
    pixels = np.stack([load_face(p, SIZE)[0] for p in faces])
    p_minor = estimate(model, pixels, tta_flip=True).p_under(18)  # params.yaml: evaluate.tta_flip true
    cut = float(np.median(p_minor))
    Policy(threshold=cut, legal_age=18, decide_on="chance").save(tmp_path / "policy.json")
    result = invoke(tmp_path, "--format", "json", "--no-detect", *map(str, faces))
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert "chance of being under 18" in body["id_check"]
    rows = body["faces"]
    np.testing.assert_allclose([r["p_minor"] for r in rows], p_minor, atol=1e-4)
    assert [r["ask_id"] for r in rows] == list(p_minor >= cut)
    assert 0 < sum(r["ask_id"] for r in rows) < len(rows)   # the rule tells faces apart

    class Context:
        artifacts = {"model": str(tmp_path / "model.keras"), "policy": str(tmp_path / "policy.json")}
        model_config = {**PredictConfig().__dict__, "tta_flip": False}

    service = FaceAgeService()
    service.load_context(Context())
    request = pd.DataFrame({"image": [base64.b64encode(p.read_bytes()).decode() for p in faces]})
    answer = service.predict(None, request, params={"detect": False})
    assert list(answer["ask_id"]) == list(estimate(model, pixels).p_under(18) >= cut)  # served without TTA here
    assert "chance of being under 18" in answer["rule"][0]
