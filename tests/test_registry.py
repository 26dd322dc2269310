"""The model registry: the `champion` alias moves only to a model with a better test MAE."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pytest

from faceage.registry import ALIAS, MODEL_NAME, register_and_promote


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


@pytest.fixture()
def store(tmp_path: Path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment("registry-test")  # not an experiment id cached by an earlier test in this process
    yield mlflow.MlflowClient()
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("MLFLOW_REGISTRY_URI", None)


def logged_model() -> str:
    with mlflow.start_run():
        return mlflow.pyfunc.log_model(name="m", python_model=Constant()).model_uri


def champion(client: mlflow.MlflowClient) -> str:
    return str(client.get_model_version_by_alias(MODEL_NAME, ALIAS).version)


def never(_):
    raise AssertionError("rescore must not be called for the same test set")


def test_champion_moves_only_to_a_better_model(store: mlflow.MlflowClient) -> None:
    first = register_and_promote(logged_model(), 6.0, "set-a", never)
    assert first["promoted"] and first["reason"] == "first registered model" and champion(store) == "1"
    worse = register_and_promote(logged_model(), 6.5, "set-a", never)
    assert not worse["promoted"] and champion(store) == "1" and worse["champion_mae_before"] == 6.0
    better = register_and_promote(logged_model(), 5.1, "set-a", never)
    assert better["promoted"] and champion(store) == "3"


def test_other_test_set_rescores_the_champion(store: mlflow.MlflowClient) -> None:
    register_and_promote(logged_model(), 6.0, "set-a", never)
    stays = register_and_promote(logged_model(), 5.0, "set-b", lambda champ: 4.0)  # champion is better on set-b
    assert not stays["promoted"] and champion(store) == "1"
    unknown = register_and_promote(logged_model(), 3.0, "set-b", lambda champ: None)
    assert not unknown["promoted"] and "cannot be scored" in unknown["reason"] and champion(store) == "1"
    moves = register_and_promote(logged_model(), 3.9, "set-b", lambda champ: 4.0)
    assert moves["promoted"] and champion(store) == "4"
