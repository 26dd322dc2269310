"""The MLflow model registry: every evaluated model is a version of `faceage`; the alias `champion` moves to
it only when its test MAE beats the current champion's on the same test set.

See and roll back:  mlflow.MlflowClient().get_model_version_by_alias("faceage", "champion")
                    mlflow.MlflowClient().set_registered_model_alias("faceage", "champion", "<older version>")
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

MODEL_NAME = "faceage"
ALIAS = "champion"


def testset_fingerprint(rows: pd.DataFrame) -> str:
    """Identity of a test set: its files and ages (not where they live)."""
    text = "\n".join(f"{f}:{a:g}" for f, a in zip(rows["file"], rows["age"]))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def current_champion(client: mlflow.MlflowClient) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(MODEL_NAME, ALIAS)
    except MlflowException:
        return None


def register_and_promote(model_uri: str, test_mae: float, test_set: str,
                         rescore: Callable[[ModelVersion], float | None]) -> dict:
    """Register the model; move `champion` to it if it is better on this test set. Returns what happened.

    When the champion was scored on another test set, `rescore` scores it on this one (or returns None
    when it cannot, and the champion stays).
    """
    client = mlflow.MlflowClient()
    new = mlflow.register_model(model_uri, MODEL_NAME, tags={"test_mae": f"{test_mae:.4f}", "test_set": test_set})
    champion = current_champion(client)
    if champion is None:
        champion_mae, reason = None, "first registered model"
    elif champion.tags.get("test_set") == test_set:
        champion_mae, reason = float(champion.tags["test_mae"]), "same test set"
    else:
        champion_mae, reason = rescore(champion), "champion re-scored on this test set"
    if champion is not None and champion_mae is None:
        promoted, reason = False, "champion cannot be scored on this test set; it stays"
    else:
        promoted = champion_mae is None or test_mae < champion_mae
    if promoted:
        client.set_registered_model_alias(MODEL_NAME, ALIAS, new.version)
    return {"version": int(new.version), "promoted": promoted, "reason": reason,
            "champion_version": int(new.version if promoted else champion.version),
            "champion_mae_before": None if champion_mae is None else round(float(champion_mae), 4)}


def rescore_on(images: np.ndarray, ages: np.ndarray, batch_size: int, tta_flip: bool) -> Callable[[ModelVersion], float | None]:
    """A `rescore` that predicts the champion's ages on these images (when its input size matches)."""
    def rescore(champion: ModelVersion) -> float | None:
        from faceage.inference import input_size, predict_ages

        service = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{champion.version}").unwrap_python_model()
        if input_size(service.model) != images.shape[1]:
            return None
        return float(np.mean(np.abs(predict_ages(service.model, images, batch_size, tta_flip) - ages)))

    return rescore
