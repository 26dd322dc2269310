"""End-to-end: the real `dvc repro`, `dvc exp run` and `mlflow server` in a temporary copy of the repository.

Tiny settings (120 synthetic faces, 32 px, the tiny_cnn backbone, 2 epochs) keep it to a few minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]  # one worker: the module fixtures run once

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def sh(cmd: list[str], cwd: Path, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    full_env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def copy_repo(dest: Path) -> Path:
    """Copy the files git would carry (tracked + untracked-not-ignored) and commit them in a fresh repo."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def tiny_params(path: Path) -> None:
    params = yaml.safe_load(path.read_text())
    params["prepare"].update(image_size=32)
    # The tiny backbone: these tests check the pipeline's plumbing, and ResNet50 would add ~50-90 s to each of the
    # four trainings here; ResNet50 is trained, saved and reloaded in tests/test_model.py.
    params["train"].update(epochs=2, batch_size=16, backbone="tiny_cnn")
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = copy_repo(tmp_path_factory.mktemp("repo"))
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@example.com"], ["git", "config", "user.name", "t"]):
        sh(cmd, root)
    tiny_params(root / "params.yaml")
    sh(["faceage", "demo-data", "--out", "data", "--n", "120"], root)
    sh(["dvc", "add", "-q", "data"], root)  # the tiny demo set replaces the default one in this copy
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-qm", "tiny copy"], root)
    return root


@pytest.fixture(scope="module")
def repro(repo: Path) -> subprocess.CompletedProcess:
    return sh(["dvc", "repro"], repo)


def mlflow_client(repo: Path):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlruns' / 'mlflow.db'}")


def test_repro_writes_metrics_and_one_mlflow_run(repo: Path, repro: subprocess.CompletedProcess) -> None:
    metrics = json.loads((repo / "results/evaluate/metrics.json").read_text())
    assert metrics["mae"] >= 0 and metrics["n_test"] > 0 and "baseline_mae" in metrics
    assert set(metrics["id_check"]) >= {"minors_not_asked", "adults_asked"}
    assert "test MAE" in repro.stdout
    for figure in ("predicted_vs_true.png", "error_by_group.png", "learning_curve.png"):
        assert (repo / "results/evaluate/plots" / figure).stat().st_size > 1000

    client = mlflow_client(repo)
    exp = client.get_experiment_by_name("faceage")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    history = client.get_metric_history(run.info.run_id, "val_mae")
    assert [m.step for m in history] == [0, 1]  # one value per epoch: the MAE curve
    assert run.data.metrics["test_mae"] == pytest.approx(metrics["mae"], abs=1e-3)
    assert run.data.params["train.learning_rate"] == "0.001"
    assert run.data.tags["data.md5"] == yaml.safe_load((repo / "data.dvc").read_text())["outs"][0]["md5"]
    assert run.data.tags["mlflow.source.git.commit"]
    models = client.search_logged_models(experiment_ids=[exp.experiment_id])
    assert [m.name for m in models] == ["serving"]  # the model is stored once: the served pyfunc, Keras file inside
    assert models[0].source_run_id == run.info.run_id
    assert str(client.get_model_version_by_alias("faceage", "champion").version) == "1"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/learning_curve.png" in artifacts


def test_second_repro_does_nothing(repo: Path, repro: subprocess.CompletedProcess) -> None:
    again = sh(["dvc", "repro"], repo)
    assert "Running stage" not in again.stdout
    assert "didn't change" in again.stdout or "up to date" in again.stdout
    status = sh(["dvc", "status", "dvc.yaml"], repo)  # the tune pipeline is separate and never ran here
    assert "up to date" in status.stdout


def test_exp_run_makes_a_new_experiment_and_mlflow_run(repo: Path, repro: subprocess.CompletedProcess) -> None:
    """An experiment with the dex head and the ID check decided on the chance of being a minor, end to end."""
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "baseline results"], repo)
    sh(["dvc", "exp", "run", "-n", "dex-chance", "-S", "train.learning_rate=0.0005", "-S", "train.head=dex",
        "-S", "policy.decide_on=chance"], repo)
    shown = json.loads(sh(["dvc", "exp", "show", "--json"], repo).stdout)
    assert "dex-chance" in json.dumps(shown)
    client = mlflow_client(repo)
    runs = client.search_runs([client.get_experiment_by_name("faceage").experiment_id],
                              filter_string="tags.`dvc.exp_name` = 'dex-chance'")
    assert len(runs) == 1
    assert runs[0].data.params["train.learning_rate"] == "0.0005" and runs[0].data.params["train.head"] == "dex"
    assert "test_mae" in runs[0].data.metrics
    policy = json.loads((repo / "results/evaluate/policy.json").read_text())
    assert policy["decide_on"] == "chance" and 0 < policy["threshold"] < 1
    assert (repo / "results/evaluate/plots/id_tradeoff_chance.png").stat().st_size > 1000
    assert "p_minor" in (repo / "results/evaluate/predictions.csv").read_text().splitlines()[0]


def wait_for(url: str, seconds: float, server: subprocess.Popen) -> None:
    """Poll a server's health URL until it answers, or fail the test (at once if the server exited). The limit is
    generous: a readiness wait, not a timing assertion; on a loaded 2-core machine start-up took over 60 s."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the server for {url} exited with status {server.returncode} before answering")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {seconds:g} s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_server_rest_api_lists_runs_with_val_mae_history(repo: Path, repro: subprocess.CompletedProcess) -> None:
    port = _free_port()
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{repo / 'mlruns' / 'mlflow.db'}",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/health", seconds=240, server=server)
        exp = json.load(urllib.request.urlopen(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=faceage"))
        req = urllib.request.Request(f"{base}/api/2.0/mlflow/runs/search", method="POST",
                                     data=json.dumps({"experiment_ids": [exp["experiment"]["experiment_id"]]}).encode(),
                                     headers={"Content-Type": "application/json"})
        runs = json.load(urllib.request.urlopen(req))["runs"]
        assert runs
        run_id = runs[-1]["info"]["run_id"]
        hist = json.load(urllib.request.urlopen(f"{base}/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key=val_mae"))
        assert len(hist["metrics"]) >= 2
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the whole group: mlflow leaves worker processes otherwise
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def test_queued_grid_with_two_parallel_workers_lands_in_mlflow(repo: Path, repro: subprocess.CompletedProcess) -> None:
    """`dvc exp run --queue` grid + `dvc queue start -j 2`: both finish, both are MLflow runs in the one store."""
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "before queue", "--allow-empty"], repo)
    sh(["dvc", "exp", "run", "--queue", "-S", "train.learning_rate=0.002,0.003"], repo)
    sh(["dvc", "queue", "start", "-j", "2"], repo)
    try:
        deadline = time.time() + 600
        while time.time() < deadline:
            status = sh(["dvc", "queue", "status"], repo).stdout
            if "Queued" not in status and "Running" not in status:
                break
            time.sleep(5)
        else:
            pytest.fail(f"queue did not finish in 10 min:\n{status}")
    finally:
        sh(["dvc", "queue", "stop", "--kill"], repo, check=False)
    assert status.count("Success") >= 2, status
    client = mlflow_client(repo)
    runs = client.search_runs([client.get_experiment_by_name("faceage").experiment_id])
    by_lr = {r.data.params.get("train.learning_rate"): r for r in runs}
    for lr in ("0.002", "0.003"):
        assert lr in by_lr, f"no MLflow run for learning_rate={lr}"
        assert "test_mae" in by_lr[lr].data.metrics
        assert by_lr[lr].data.tags.get("dvc.exp_name")


def _post(url: str, payload: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, method="POST", data=json.dumps(payload).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_served_model_answers_like_evaluate_and_survives_garbage(repo: Path, repro: subprocess.CompletedProcess) -> None:
    """`mlflow models serve` on the registered model: the same age as the evaluate stage for the same image."""
    import base64
    import csv as csv_module

    registry = json.loads((repo / "results/evaluate/registry.json").read_text())  # what the workspace evaluated
    first = next(csv_module.DictReader(open(repo / "results/evaluate/predictions.csv")))
    port = _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlruns' / 'mlflow.db'}",
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    server = subprocess.Popen([str(BIN / "mlflow"), "models", "serve", "-m", f"models:/faceage/{registry['version']}", "--env-manager",
                               "local", "-h", "127.0.0.1", "-p", str(port)], cwd=repo, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/ping", seconds=240, server=server)
        image = base64.b64encode((repo / "data" / first["file"]).read_bytes()).decode()
        status, body = _post(f"{base}/invocations", {"dataframe_split": {"columns": ["image"], "data": [[image]]},
                                                     "params": {"detect": False}})
        assert status == 200, body
        answer = body["predictions"][0]
        assert answer["age"] == pytest.approx(float(first["predicted"]), abs=0.02)  # training/serving parity
        policy = json.loads((repo / "results/evaluate/policy.json").read_text())
        if policy["decide_on"] == "chance":  # the workspace holds the dex experiment (test_exp_run)
            assert answer["ask_id"] == (float(first["p_minor"]) >= policy["threshold"])
        else:
            assert answer["ask_id"] == (answer["age"] < policy["threshold"])
        status, body = _post(f"{base}/invocations", {"dataframe_split": {"columns": ["image"], "data": [["bm90IGFuIGltYWdl"]]}})
        assert 400 <= status < 500 and "not an image" in json.dumps(body)
        status, _ = _post(f"{base}/invocations", {"dataframe_split": {"columns": ["image"], "data": [[image]]},
                                                  "params": {"detect": False}})
        assert status == 200  # still up
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
