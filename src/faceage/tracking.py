"""MLflow set-up and run bookkeeping, shared by the stages.

The local store is an SQLite database inside mlruns/ with artifacts beside it (MLflow 3 refuses a plain
file store by default). MLFLOW_TRACKING_URI overrides it, so a team server works unchanged, and
MLFLOW_EXPERIMENT_NAME picks the experiment (default "faceage").

Under `dvc exp run --queue` stages run in a temporary copy of the repository; DVC then sets DVC_ROOT to
the real repository, and the store is put there so queued experiments land in the same mlruns/.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import mlflow

DEFAULT_EXPERIMENT = "faceage"
RUN_FILE = "mlflow_run.json"


def store_root() -> Path:
    """The folder that holds mlruns/: the DVC repository root under DVC, else the working directory."""
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def default_tracking_uri() -> str:
    return f"sqlite:///{store_root() / 'mlruns' / 'mlflow.db'}"


def configure_tracking() -> str:
    """Point MLflow at the configured store and make the experiment the active one; return its id."""
    experiment_id = _experiment_id()
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def _experiment_id() -> str:
    custom_uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not custom_uri:
        (store_root() / "mlruns").mkdir(exist_ok=True)
    mlflow.set_tracking_uri(custom_uri or default_tracking_uri())  # note: MLflow exports it to os.environ
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME", DEFAULT_EXPERIMENT)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    # The local store keeps artifacts beside the database, at an absolute path (queued DVC runs have
    # another working directory); a custom store (a team server) picks its own.
    artifact_location = None if custom_uri else (store_root() / "mlruns" / "artifacts").as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=artifact_location)
    except mlflow.exceptions.MlflowException:
        # Another process (a parallel `dvc queue` worker) created it first.
        return mlflow.get_experiment_by_name(name).experiment_id


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def run_tags(extra: dict[str, Any] | None = None) -> dict[str, str]:
    """Tags that link an MLflow run to its code, data and DVC experiment."""
    tags = {"mlflow.source.git.commit": git_commit(), "dvc.exp_name": os.environ.get("DVC_EXP_NAME"),
            "dvc.stage": os.environ.get("DVC_STAGE")}
    tags.update(extra or {})
    return {k: str(v) for k, v in tags.items() if v is not None}


def save_run_ref(run: mlflow.ActiveRun, out_dir: Path) -> None:
    """Remember which MLflow run a stage wrote, so the next stage logs to the same run."""
    ref = {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id, "tracking_uri": mlflow.get_tracking_uri()}
    (out_dir / RUN_FILE).write_text(json.dumps(ref, indent=2) + "\n")


def load_run_id(stage_dir: Path) -> str | None:
    path = stage_dir / RUN_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("run_id")


def pip_requirements() -> list[str]:
    """What a logged Keras model needs (given explicitly: MLflow's inference of it reloads the model)."""
    from importlib.metadata import version

    import keras

    backend = keras.backend.backend()
    backend_pkg = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(backend, backend)
    return [f"keras=={version('keras')}", f"{backend_pkg}=={version(backend_pkg)}", f"numpy=={version('numpy')}"]
