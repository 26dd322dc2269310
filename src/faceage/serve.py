"""The served model: an MLflow pyfunc that takes a photo (base64 JPEG/PNG) and answers age, age group and the
ID-check decision, with the same decoding, face crop and rule as `faceage predict`.

    mlflow models serve -m models:/faceage@champion --env-manager local -p 5001
    curl -s localhost:5001/invocations -H 'Content-Type: application/json' \\
         -d '{"dataframe_split": {"columns": ["image"], "data": [["<base64 JPEG>"]]}}'

An image that is missing, empty, too large, not base64, not an image or without a face is not scored: in a request
with other, good images it comes back as its own row (status "error", the reason in note, no age, ask_id true: a
shopper whose age cannot be estimated is asked for ID), and the good ones are answered as usual; a request in which
no image can be scored gets HTTP 400 with every reason. The server stays up. `params: {"detect": false}` treats the
photo as a face crop.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import asdict, replace
from importlib.metadata import version
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

from faceage.config import PredictConfig

MAX_IMAGE_BYTES = 10 * 1024 * 1024
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "image")]),
    outputs=Schema([ColSpec("double", "age"), ColSpec("string", "group"), ColSpec("boolean", "ask_id"),
                    ColSpec("string", "box"), ColSpec("string", "rule"), ColSpec("string", "status"),
                    ColSpec("string", "note")]),
    params=ParamSchema([ParamSpec("detect", "boolean", True)]),
)


def bad_request(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def decode_payload(value: object) -> bytes:
    """base64 text -> image bytes, refusing what cannot be an image before decoding it (ImageProblem)."""
    from faceage.data.images import ImageProblem

    if not isinstance(value, str) or not value.strip():
        raise ImageProblem("empty or missing (send the photo as base64 text in column 'image')")
    if len(value) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise ImageProblem(f"too large ({len(value) * 3 // 4} bytes; at most {MAX_IMAGE_BYTES})")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ImageProblem("not valid base64") from None


class FaceAgeService(mlflow.pyfunc.PythonModel):
    """Keras age model + face crop + calibrated ID-check rule, as one servable model."""

    def load_context(self, context) -> None:
        from faceage.inference import input_size, load_model
        from faceage.policy import Policy

        self.model = load_model(Path(context.artifacts["model"]))
        self.size = input_size(self.model)
        self.policy = Policy.load(Path(context.artifacts["policy"]))
        config = dict(context.model_config or {})
        self.tta_flip = bool(config.pop("tta_flip", False))
        self.cfg = PredictConfig(**config)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        from faceage.ages import age_group
        from faceage.data.images import ImageProblem
        from faceage.inference import estimate
        from faceage.predict import faces_of_photo

        if "image" not in model_input:
            raise bad_request("the request needs a column 'image' (base64 JPEG or PNG)")
        if len(model_input) == 0:
            raise bad_request("no image in the request")
        cfg = replace(self.cfg, detect=bool((params or {}).get("detect", self.cfg.detect)))
        found, problems = {}, {}
        for i, value in enumerate(model_input["image"]):
            try:
                faces, note = faces_of_photo(decode_payload(value), self.size, cfg, all_faces=False)
                found[i] = (faces[0], note)
            except ImageProblem as exc:
                problems[i] = str(exc)
        if not found:
            raise bad_request("; ".join(f"image {i}: {why}" for i, why in problems.items()))
        est = estimate(self.model, np.stack([face.pixels for face, _ in found.values()]), tta_flip=self.tta_flip)
        scored = dict(zip(found, zip(est.ages, self.policy.ask(est))))
        rows = []
        for i in range(len(model_input)):
            if i in problems:
                rows.append({"age": np.nan, "group": "", "ask_id": True, "box": "", "rule": self.policy.rule,
                             "status": "error", "note": f"image {i}: {problems[i]}; not scored, ask for ID"})
                continue
            (face, note), (age, ask) = found[i], scored[i]
            rows.append({"age": round(float(age), 2), "group": str(age_group(float(age))), "ask_id": bool(ask),
                         "box": ",".join(map(str, face.box)), "rule": self.policy.rule, "status": "ok", "note": note})
        return pd.DataFrame(rows, columns=SIGNATURE.outputs.input_names())


def serving_requirements() -> list[str]:
    from faceage.tracking import pip_requirements

    return pip_requirements() + [f"{pkg}=={version(pkg)}" for pkg in ("pandas", "pillow", "opencv-python-headless", "mlflow")]


def log_serving_model(model_file: Path, policy_file: Path, predict_cfg: PredictConfig, tta_flip: bool):
    """Log the pyfunc (with the faceage code, the Keras model and the policy) to the active run."""
    import faceage

    return mlflow.pyfunc.log_model(
        name="serving", python_model=FaceAgeService(), signature=SIGNATURE,
        artifacts={"model": str(model_file), "policy": str(policy_file)},
        model_config={**asdict(predict_cfg), "tta_flip": tta_flip},
        code_paths=[str(Path(faceage.__file__).parent)], pip_requirements=serving_requirements())
