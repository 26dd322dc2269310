"""The benchmarks keep working: their tiny modes run and write every field (no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "utkface-sample" / "images"


def run_bench(script: str, tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "report.json"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    proc = subprocess.run([sys.executable, f"bench/{script}", "--tiny", "--out", str(out),
                           "--work-dir", str(tmp_path / "work"), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads(out.read_text())


def test_quality_benchmark_tiny_mode_reports_every_field(tmp_path: Path) -> None:
    if not SHARED.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{SHARED} is missing")
        pytest.skip("shared UTKFace sample not found")
    report = run_bench("quality.py", tmp_path)
    for key in ("mae", "baseline_mae", "cs5", "mae_by_group", "minors_not_asked", "train_minutes", "n_test",
                "by_gender", "by_race", "policy", "id_tradeoff_test", "command"):
        assert key in report, key
    assert report["tiny"] and report["n_test"] > 0 and report["baseline_mae"] > 0
    assert report["baseline_age"] > 0 and report["epochs"] == 1
    assert set(report["mae_by_group"]) <= {"0-12", "13-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65+"}
    assert "threshold" in report["policy"] and "by_gender" in report["policy"]


def test_pruning_benchmark_tiny_mode_compares_both_studies(tmp_path: Path) -> None:
    report = run_bench("pruning.py", tmp_path)
    assert set(report["results"]) == {"none", "median"}
    for result in report["results"].values():
        assert result["epochs_trained"] > 0 and result["best_val_mae"] > 0
    assert set(report["ratios_vs_none"]["median"]) == {"epochs", "wall_time", "best_val_mae_delta"}
