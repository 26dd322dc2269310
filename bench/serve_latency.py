"""Latency of the served model: p50/p95 over N requests sent one at a time on loopback to
`mlflow models serve`, next to the same model called in-process on the same photo (measured in the same run).

    .venv/bin/python bench/serve_latency.py                  # the model registered by the last evaluate
    .venv/bin/python bench/serve_latency.py --requests 100 --model-uri models:/faceage@champion

Writes results/bench/serve_latency.json. Needs a `dvc repro` (or `make demo`) first.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, payload: bytes) -> float:
    start = time.perf_counter()
    req = urllib.request.Request(url, data=payload, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        resp.read()
    return (time.perf_counter() - start) * 1000


def percentiles(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "mean_ms": round(float(np.mean(ms)), 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--model-uri", default=None, help="default: the version in results/evaluate/registry.json")
    ap.add_argument("--image", type=Path, default=None, help="default: the first test image of the prepared data")
    ap.add_argument("--out", type=Path, default=Path("results/bench/serve_latency.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path('mlruns/mlflow.db').resolve()}")
    uri = args.model_uri or f"models:/faceage/{json.loads(Path('results/evaluate/registry.json').read_text())['version']}"
    if args.image is None:
        import csv

        first = next(csv.DictReader(open("results/evaluate/predictions.csv")))["file"]
        args.image = Path("data") / first
    payload = json.dumps({"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(args.image.read_bytes()).decode()]]},
                          "params": {"detect": False}}).encode()

    # In-process baseline: the same pyfunc, the same photo, no HTTP.
    import mlflow
    import pandas as pd

    service = mlflow.pyfunc.load_model(uri)
    frame = pd.DataFrame({"image": [json.loads(payload)["dataframe_split"]["data"][0][0]]})
    for _ in range(3):
        service.predict(frame, params={"detect": False})
    local = []
    for _ in range(args.requests):
        start = time.perf_counter()
        service.predict(frame, params={"detect": False})
        local.append((time.perf_counter() - start) * 1000)

    port = free_port()
    server = subprocess.Popen([str(BIN / "mlflow"), "models", "serve", "-m", uri, "--env-manager", "local",
                               "-h", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},  # it starts uvicorn
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}/invocations"
    try:
        deadline = time.time() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                if time.time() > deadline:
                    raise SystemExit("server did not start in 3 min") from None
                time.sleep(0.5)
        for _ in range(3):
            post(url, payload)  # warm-up: the first calls trace the model
        served = [post(url, payload) for _ in range(args.requests)]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    report = {"model_uri": uri, "image": str(args.image), "requests": args.requests,
              "served": percentiles(served), "in_process": percentiles(local),
              "served_vs_in_process_p50": round(float(np.percentile(served, 50) / np.percentile(local, 50)), 2),
              "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
              "machine": f"{os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d %H:%M")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
