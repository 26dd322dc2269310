"""Optuna tuning on tiny generated data: nested MLflow runs, pruning, failure, resume after SIGKILL, --apply."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
import yaml

from faceage.config import AugmentConfig, TrainConfig, TuneConfig, load_params
from faceage.data.prepared import save_prepared
from faceage.errors import ConfigError
from faceage.tune import apply_best, make_storage, parse_space, run_tune

REPO = Path(__file__).resolve().parents[1]
SIZE = 32
BASE = TrainConfig(backbone="tiny_cnn", batch_size=16, precision="float32",
                   augment=AugmentConfig.off())


def write_prepared(root: Path, n: int = 48) -> Path:
    rng = np.random.default_rng(0)
    ages = rng.uniform(1, 80, n).round()
    images = np.clip(ages[:, None, None, None] * 3 + rng.normal(0, 5, (n, SIZE, SIZE, 3)), 0, 255).astype("uint8")
    split = np.array(["train"] * (n - 16) + ["val"] * 8 + ["test"] * 8)
    manifest = pd.DataFrame({"index": np.arange(n), "file": [f"{i}.jpg" for i in range(n)], "age": ages, "split": split})
    out = root / "results" / "prepare"
    save_prepared(out, images, manifest)
    return out


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    write_prepared(tmp_path)
    yield tmp_path
    if mlflow.active_run():
        mlflow.end_run()
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # mlflow.set_tracking_uri exports it


def tune_cfg(workdir: Path, **kw) -> TuneConfig:
    defaults = dict(n_trials=3, epochs=3, pruner="median", storage=f"sqlite:///{workdir}/optuna.db", study_name="t",
                    heartbeat_seconds=1, space={"train.learning_rate": {"choices": [0.001, 10.0]}})
    return TuneConfig(**{**defaults, **kw})


def runs_of(workdir: Path) -> list:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("faceage")
    return client.search_runs([exp.experiment_id])


def test_three_trials_nested_in_one_parent_with_a_pruned_one(workdir: Path) -> None:
    cfg = tune_cfg(workdir)
    study = optuna.create_study(storage=cfg.storage, study_name=cfg.study_name, direction="minimize")
    for lr in (0.001, 0.001, 10.0):  # the diverging third trial must be pruned by the median pruner
        study.enqueue_trial({"train.learning_rate": lr})
    summary = run_tune(BASE, cfg, workdir / "results" / "prepare", workdir / "results" / "tune")

    assert summary["states"] == {"COMPLETE": 2, "PRUNED": 1}
    assert summary["params"] == {"train.learning_rate": 0.001}
    assert (workdir / "results/tune/best_params.yaml").is_file()
    runs = runs_of(workdir)
    parents = [r for r in runs if r.data.tags.get("faceage.role") == "study"]
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.data.tags["optuna.state"] for r in children) == ["COMPLETE", "COMPLETE", "PRUNED"]
    assert {r.info.status for r in children} == {"FINISHED", "KILLED"}
    for child in children:
        assert child.data.params["train.learning_rate"] in ("0.001", "10.0")
    assert parents[0].data.metrics["best_val_mae"] == pytest.approx(summary["best_value"])
    assert parents[0].data.params["best.train.learning_rate"] == "0.001"
    assert (workdir / "results/tune/plots/optimization_history.png").is_file()
    assert_dashboard_lists_study(cfg.storage, cfg.study_name)


def assert_dashboard_lists_study(storage: str, name: str) -> None:
    """optuna-dashboard opens the study's storage and its API lists the study."""
    import json
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "optuna-dashboard"), storage, "--port", str(port),
                               "--host", "127.0.0.1", "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        for _ in range(60):
            try:
                body = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2))
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("optuna-dashboard did not answer")
        assert name in [study["study_name"] for study in body["study_summaries"]]
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)


def test_a_crashing_trial_is_recorded_as_fail_and_the_study_goes_on(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import faceage.train

    real_fit, calls = faceage.train.fit, []

    def flaky_fit(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise MemoryError("simulated out of memory")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(faceage.train, "fit", flaky_fit)
    cfg = tune_cfg(workdir, n_trials=1, epochs=1, pruner="none", space={"train.learning_rate": {"low": 1e-4, "high": 1e-3, "log": True}})
    summary = run_tune(BASE, dataclasses.replace(cfg, n_trials=1), workdir / "results/prepare", workdir / "results/tune")
    assert summary["states"] == {"COMPLETE": 1, "FAIL": 1}
    failed = [r for r in runs_of(workdir) if r.data.tags.get("optuna.state") == "FAIL"]
    assert len(failed) == 1 and "simulated out of memory" in failed[0].data.tags["error"]
    assert failed[0].info.status == "FAILED"


def test_resume_after_sigkill_keeps_completed_trials(workdir: Path) -> None:
    storage = f"sqlite:///{workdir}/optuna.db"
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"].update(backbone="tiny_cnn", batch_size=16,
                           augment={"flip": False, "rotation": 0.0, "zoom": 0.0, "shift": 0.0, "erase": 0.0})
    params["tune"].update(n_trials=3, epochs=8, pruner="none", storage=storage, study_name="k", heartbeat_seconds=1,
                          space={"train.learning_rate": {"low": 1e-4, "high": 1e-3, "log": True}})
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen([sys.executable, "-m", "faceage", "tune"], cwd=workdir, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            time.sleep(1)
            try:
                trials = optuna.load_study(study_name="k", storage=storage).get_trials(deepcopy=False)
            except KeyError:
                continue
            states = [t.state for t in trials]
            # Kill once trial 1 has its MLflow run (optuna marks a trial RUNNING a moment before the run exists).
            if (optuna.trial.TrialState.COMPLETE in states and optuna.trial.TrialState.RUNNING in states
                    and any(r.data.tags.get("optuna.trial") == "1" for r in runs_of(workdir))):
                break
        else:
            pytest.fail("the tuning process never completed a first trial")
        proc.send_signal(signal.SIGKILL)  # in the middle of trial 2
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(4)  # past the heartbeat grace period (3 x 1 s)

    cfg = load_params(workdir / "params.yaml")
    summary = run_tune(cfg.train, dataclasses.replace(cfg.tune, n_trials=2), workdir / "results/prepare", workdir / "results/tune")
    study = optuna.load_study(study_name="k", storage=storage)
    states = [t.state.name for t in study.get_trials()]
    assert states.count("COMPLETE") == 2  # the first one kept, one more run
    assert states[1] == "FAIL"            # the killed one, not counted
    assert summary["states"]["COMPLETE"] == 2
    killed = [r for r in runs_of(workdir) if r.data.tags.get("optuna.trial") == "1"]
    assert killed and killed[0].info.status == "FAILED"


def test_apply_changes_only_the_tuned_keys(tmp_path: Path) -> None:
    params_file = tmp_path / "params.yaml"
    original = (REPO / "params.yaml").read_text()
    params_file.write_text(original)
    best = tmp_path / "best_params.yaml"
    best.write_text(yaml.safe_dump({"params": {"train.learning_rate": 0.000412345678, "train.augment.flip": False}}))
    apply_best(params_file, best)
    before, after = yaml.safe_load(original), yaml.safe_load(params_file.read_text())
    assert after["train"]["learning_rate"] == pytest.approx(0.000412346)
    assert after["train"]["augment"]["flip"] is False
    after["train"]["learning_rate"] = before["train"]["learning_rate"]
    after["train"]["augment"]["flip"] = before["train"]["augment"]["flip"]
    assert after == before
    changed = [(a, b) for a, b in zip(original.splitlines(), params_file.read_text().splitlines()) if a != b]
    assert len(changed) == 2  # comments and every other line untouched


@pytest.mark.parametrize(("space", "message"), [
    ({}, "empty search space"),
    ({"train.learnig_rate": {"low": 1e-4, "high": 1e-3}}, "train.learnig_rate: unknown key"),
    ({"train.learning_rate": {"low": 1e-3, "high": 1e-4}}, "is above high"),
    ({"train.learning_rate": {"low": 0.0, "high": 1e-3, "log": True}}, "log scale"),
    ({"train.learning_rate": {"low": 1e-4, "high": 50.0}}, "train.learning_rate: 50.0 is out of range"),
    ({"train.loss": {"choices": ["mse", "l7"]}}, "choose one of"),
    ({"prepare.image_size": {"low": 32, "high": 64}}, "only train.* keys"),
])
def test_invalid_search_space_is_one_clear_error(space: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_space(space, BASE)


def test_bad_storage_url_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tune.storage"):
        make_storage(TuneConfig(storage="not a url"))
    with pytest.raises(ConfigError, match="tune.storage"):
        make_storage(TuneConfig(storage="postgresql://nobody@127.0.0.1:1/none"))
