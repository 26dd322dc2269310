"""The benchmarks keep working: their tiny modes run and write every field (no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "utkface-sample" / "images"


def require_shared() -> None:
    if not SHARED.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{SHARED} is missing")
        pytest.skip("shared UTKFace sample not found")


def run_bench(script: str, tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "report.json"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    proc = subprocess.run([sys.executable, f"bench/{script}", "--tiny", "--out", str(out),
                           "--work-dir", str(tmp_path / "work"), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads(out.read_text())


def test_quality_benchmark_tiny_mode_reports_every_field(tmp_path: Path) -> None:
    require_shared()
    report = run_bench("quality.py", tmp_path)
    for key in ("mae", "baseline_mae", "cs5", "mae_by_group", "minors_not_asked", "train_minutes", "n_test",
                "by_gender", "by_race", "policy", "id_tradeoff_test", "command"):
        assert key in report, key
    assert report["tiny"] and report["n_test"] > 0 and report["baseline_mae"] > 0
    assert report["baseline_age"] > 0 and report["epochs"] == 1
    assert set(report["mae_by_group"]) <= {"0-12", "13-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65+"}
    assert "threshold" in report["policy"] and "by_gender" in report["policy"]



@pytest.mark.parametrize("item, named", [("train.batch_size=0", "train.batch_size"), ("train.bogus=1", "train.bogus"),
                                         ("train.batch_size", "KEY=VALUE")])
def test_a_bad_set_override_is_refused_naming_the_key(item: str, named: str) -> None:
    sys.path.insert(0, str(REPO / "bench"))
    from common import load_params_with

    from faceage.errors import ConfigError

    with pytest.raises((ConfigError, SystemExit), match=named):
        load_params_with(REPO / "params.yaml", [item])
    assert load_params_with(REPO / "params.yaml", ["train.batch_size=128", "train.augment.erase=0"]).train.batch_size == 128


def test_quality_benchmark_refuses_a_prepare_override_it_would_ignore(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "bench/quality.py", "--tiny", "--out", str(tmp_path / "r.json"),
                           "--set", "prepare.seed=7"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "prepare.seed" in proc.stderr and "only prepare.image_size" in proc.stderr
    assert not (tmp_path / "r.json").exists()

def test_pruning_benchmark_tiny_mode_compares_both_studies(tmp_path: Path) -> None:
    report = run_bench("pruning.py", tmp_path)
    assert set(report["results"]) == {"none", "median"}
    for result in report["results"].values():
        assert result["epochs_trained"] > 0 and result["best_val_mae"] > 0
    assert set(report["ratios_vs_none"]["median"]) == {"epochs", "wall_time", "best_val_mae_delta"}


def test_speed_benchmark_tiny_mode_reports_every_headline(tmp_path: Path) -> None:
    require_shared()
    report = run_bench("speed.py", tmp_path, "--set", "train.learning_rate=0.002")
    assert report["overrides"] == ["train.learning_rate=0.002"]
    ours = report["time_to_mae8"]["ours"][report["time_to_mae8"]["ours_default"]]
    assert ours["learning_rate"] == 0.002 and report["time_to_mae8"]["seed"]["learning_rate"] == 0.001  # the seed's stays
    assert report["time_to_mae8"]["seed"]["batch_size"] == 32 and report["time_to_mae8"]["seed"]["schedule"] == "constant"
    for key in ("pipeline_vs_model_only", "bf16_speedup", "time_to_mae8_speedup", "infer_p50_ms", "prepare_img_per_s",
                "ceiling_gflops", "training_img_per_s", "time_to_mae8", "inference", "prepare", "command"):
        assert key in report, key
    assert report["tiny"] and report["prepare"]["images"] == 240
    assert report["ceiling_gflops"]["fp32"] > 0 and report["ceiling_gflops"]["bf16"] > 0
    sizes = report["training_img_per_s"]
    assert set(sizes) == {"32px_fp32", "32px_bf16", "48px_fp32"}
    assert {"model_only", "pipeline", "seed_jpeg_per_epoch", "mfu_vs_matmul_ceiling"} <= set(sizes["48px_fp32"])
    assert set(report["time_to_mae8"]["ours"]) == {report["time_to_mae8"]["ours_default"]}  # tiny: the default only
    for run in (*report["time_to_mae8"]["ours"].values(), report["time_to_mae8"]["seed"]):
        assert run["epochs"] and run["last_val_mae"] > 0 and run["images_seen"] > 0
    infer = report["inference"]
    for key in ("end_to_end", "model_only", "eager_call", "model_predict_call"):
        assert infer[key]["p50_ms"] > 0 and infer[key]["p95_ms"] >= infer[key]["p50_ms"]


def test_precision_benchmark_tiny_mode_reports_both_precisions_and_what_auto_picks(tmp_path: Path) -> None:
    require_shared()
    report = run_bench("precision.py", tmp_path, "--set", "train.batch_size=4")
    assert report["tiny"] and report["model"]["backbone"] == "tiny_cnn"
    assert report["model"]["batch_size"] == 4 and report["overrides"] == ["train.batch_size=4"]  # --set reached the run
    assert set(report["training_img_per_s"]) == {"float32", "mixed_bfloat16"}
    assert all(rate > 0 for rate in report["training_img_per_s"].values()) and report["bf16_vs_fp32_training"] > 0
    assert report["auto_resolves_to"] in ("float32", "mixed_bfloat16") and isinstance(report["auto_picks_the_faster"], bool)
    assert (report["auto_resolves_to"] == "mixed_bfloat16") == bool(report["cpu_bf16_instructions"] or report["accelerator"])
    assert report["ceiling_gflops"]["fp32"] > 0 and report["ceiling_gflops"]["bf16"] > 0


def test_id_check_report_from_saved_predictions(tmp_path: Path) -> None:
    """Generated predictions with a known answer: the one 15-year-old who looks 33 sets the rule."""
    import pandas as pd

    rng = np.random.default_rng(0)
    for split in ("val", "test"):
        ages = np.concatenate([np.full(20, 4.0), rng.integers(13, 18, 40), rng.integers(18, 80, 140)]).astype(float)
        pred = ages + rng.normal(0, 2, len(ages))
        pred[:20] = 50.0  # toddlers who look 50: not minors at the till, so they must not move the rule
        pred[20] = 33.0 if split == "val" else 20.0
        pd.DataFrame({"age": ages, "predicted": pred, "gender": rng.integers(0, 2, len(ages)),
                      "race": rng.integers(0, 5, len(ages))}).to_csv(tmp_path / f"predictions_{split}.csv", index=False)
    out = tmp_path / "id_check.json"
    proc = subprocess.run([sys.executable, "bench/id_check.py", "--predictions", str(tmp_path), "--out", str(out),
                           "--max-minors-not-asked", "0"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["minors"] == "13-17" and report["policy"]["met_on_val"]
    assert report["policy"]["threshold"] == pytest.approx(33.25) and report["policy"]["val_n_minors"] == 40
    assert report["test"]["minors_not_asked"] == 0.0 and 0 < report["test"]["minors_not_asked_upper95"] < 0.1
    assert set(report["fairness_test"]) == {"gender", "race"} and set(report["fairness_test"]["gender"]) == {"male", "female"}
    assert (tmp_path / "id_check.png").is_file()


@pytest.mark.parametrize("head", ["dex", "gaussian"])
def test_id_check_compares_the_age_and_the_chance_rule_of_a_model_that_says_how_sure_it_is(
        tmp_path: Path, head: str) -> None:
    """With probs_*.npy (a dex model) or a spread column (a gaussian model), both rules are calibrated on val. Here
    P(minor) falls with the predicted age, so the two rules rank faces alike and must ask about the same people."""
    import pandas as pd

    rng = np.random.default_rng(1)
    for split in ("val", "test"):
        ages = np.concatenate([rng.integers(13, 18, 40), rng.integers(18, 80, 160)]).astype(float)
        pred = np.clip(ages + rng.normal(0, 3, len(ages)), 1, 100)
        if head == "gaussian":
            # the spread knows: faces estimated further off get a larger sigma
            frame = pd.DataFrame({"age": ages, "predicted": pred, "spread": 1.0 + np.abs(pred - ages)})
        else:
            p_minor = 1 / (1 + np.exp((pred - 18) / 3))
            probs = np.zeros((len(ages), 121))
            probs[:, 15] = p_minor
            probs[np.arange(len(ages)), np.maximum(np.rint(pred).astype(int), 18)] += 1 - p_minor
            np.save(tmp_path / f"probs_{split}.npy", probs)
            frame = pd.DataFrame({"age": ages, "predicted": probs @ np.arange(121)})
        frame.to_csv(tmp_path / f"predictions_{split}.csv", index=False)
    out = tmp_path / "id_check.json"
    proc = subprocess.run([sys.executable, "bench/id_check.py", "--predictions", str(tmp_path), "--out", str(out),
                           "--decide-on", "chance"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    rules = report["rules"]
    assert set(rules) == {"age", "chance"} and report["policy"]["decide_on"] == "chance"
    assert "chance of being under 18" in rules["chance"]["rule"] and 0 < rules["chance"]["threshold"] < 1
    assert rules["chance"]["val_minors_not_asked"] <= 0.02 and rules["age"]["val_minors_not_asked"] <= 0.02
    assert rules["chance"]["test"]["adults_asked"] == pytest.approx(rules["age"]["test"]["adults_asked"], abs=0.05)
    assert set(rules["age"]["test_adults_25plus_asked_at"]) == {"minors_not_asked<=0", "minors_not_asked<=0.02",
                                                                "minors_not_asked<=0.05", "minors_not_asked<=0.1"}
    assert (tmp_path / "id_check-chance.png").is_file()
    if head == "gaussian":
        spread = report["spread_test"]
        assert spread["spearman_spread_vs_abs_error"] == pytest.approx(1.0)
        assert set(spread["mean_spread_by_group"]) <= {"13-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65+"}
        assert all(m["age"] < 18 and m["predicted"] >= 25 for m in spread["minors_estimated_25_or_older"])
    else:
        assert report["spread_test"] is None


def test_behaviour_benchmark_tiny_mode_reports_every_change(tmp_path: Path) -> None:
    require_shared()
    report = run_bench("behaviour.py", tmp_path)
    assert report["tiny"] and report["n_faces"] > 10 and report["mae"] > 0
    assert set(report["changes"]) == {"mirror", "brighter_10pct", "darker_10pct", "shift_2px", "jpeg_q50"}
    for entry in report["changes"].values():
        assert entry["p95_abs_change"] >= 0 and 0 <= entry["decisions_flipped_store_T25"] <= 1
    assert report["changes"]["mirror"]["mean_abs_change"] > 0  # an untrained net is not mirror-symmetric


def test_tta_benchmark_tiny_mode_reports_every_view_count(tmp_path: Path) -> None:
    require_shared()
    report = run_bench("tta.py", tmp_path)
    assert report["tiny"] and set(report["configs"]) == {"none", "flip", "flip+shift1", "flip+shift2"}
    assert [c["views"] for c in report["configs"].values()] == [1, 2, 10, 10]
    assert report["configs"]["flip"]["test_mae_vs_flip"] == 1.0
    for entry in report["configs"].values():
        assert entry["test_mae"] > 0 and set(entry["test_id_check"]) >= {"minors_not_asked", "adults_25plus_asked"}


def write_predictions(folder: Path, ages: np.ndarray, noise: float, seed: int) -> None:
    """Generated val and test predictions of a model whose age errors have the given spread (years)."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split in ("val", "test"):
        pred = ages + rng.normal(0, noise, len(ages))
        pd.DataFrame({"file": [f"{split}_{i}.jpg" for i in range(len(ages))], "age": ages,
                      "predicted": pred}).to_csv(folder / f"predictions_{split}.csv", index=False)


def run_compare(a: Path, b: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "bench/compare.py", str(a), str(b), "--rounds", "300", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def test_compare_tells_a_better_model_from_noise_and_agrees_with_id_check(tmp_path: Path) -> None:
    """B errs half as much as A on the same faces: the paired interval of B - A lies below 0. A model against
    itself differs by exactly 0. The point figures are id_check's, read from the same predictions."""
    rng = np.random.default_rng(1)
    ages = np.concatenate([rng.integers(13, 18, 120), rng.integers(18, 80, 600)]).astype(float)
    write_predictions(tmp_path / "a", ages, noise=8.0, seed=2)
    write_predictions(tmp_path / "b", ages, noise=4.0, seed=3)
    proc = run_compare(tmp_path / "a", tmp_path / "b", tmp_path / "ab.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "ab.json").read_text())
    assert report["n_test"] == 720 and report["rounds"] == 300
    mae = report["b_minus_a"]["mae"]
    assert mae["ci95"][1] < 0 and mae["share_of_rounds_b_lower"] == 1.0
    assert mae["value"] == pytest.approx(report["b"]["mae"]["value"] - report["a"]["mae"]["value"], abs=1e-3)
    assert report["b_minus_a"]["adults_25plus_asked_at_minors_not_asked<=0.05"]["ci95"][1] < 0

    proc = run_compare(tmp_path / "a", tmp_path / "a", tmp_path / "aa.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    same = json.loads((tmp_path / "aa.json").read_text())["b_minus_a"]
    assert all(d["value"] == 0 and d["ci95"] == [0, 0] for d in same.values())

    out = tmp_path / "id_check.json"
    proc = subprocess.run([sys.executable, "bench/id_check.py", "--predictions", str(tmp_path / "a"), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    checked = json.loads(out.read_text())
    assert report["a"]["rule"] == checked["policy"]["rule"]
    assert report["a"]["rule_adults_25plus_asked"]["value"] == pytest.approx(checked["test"]["adults_25plus_asked"], abs=1e-4)
    for level in ("0.02", "0.05", "0.1"):
        assert report["a"][f"adults_25plus_asked_at_minors_not_asked<={level}"]["value"] == pytest.approx(
            checked["rules"]["age"]["test_adults_25plus_asked_at"][f"minors_not_asked<={level}"], abs=1e-4)




def test_compare_pits_a_models_chance_rule_against_its_age_rule_on_the_same_faces(tmp_path: Path) -> None:
    """A gaussian model whose spread is right (half the faces it is sure of, half not): ranking faces by
    P(minor) instead of by age asks fewer adults at the same share of teenagers unasked, the ages (and MAE) are
    one and the same, and the closed-form costs are id_check's. A run without a spread cannot use the chance rule."""
    import pandas as pd

    rng = np.random.default_rng(7)
    folder = tmp_path / "gaussian"
    folder.mkdir()
    for split in ("val", "test"):
        ages = np.concatenate([rng.integers(13, 18, 300), rng.integers(18, 80, 1500)]).astype(float)
        spread = rng.choice([2.0, 10.0], len(ages))
        pd.DataFrame({"file": [f"{split}_{i}.jpg" for i in range(len(ages))], "age": ages,
                      "predicted": ages + rng.normal(0, spread), "spread": spread}).to_csv(
            folder / f"predictions_{split}.csv", index=False)
    out = tmp_path / "rules.json"
    proc = subprocess.run([sys.executable, "bench/compare.py", str(folder), str(folder), "--rule-b", "chance",
                           "--rounds", "200", "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert (report["a"]["decide_on"], report["b"]["decide_on"]) == ("age", "chance")
    assert "chance of being under 18" in report["b"]["rule"]
    assert report["b_minus_a"]["mae"]["value"] == 0 and report["b_minus_a"]["mae"]["ci95"] == [0, 0]
    # measured on this data: the calibrated rules -0.08 [-0.10, -0.07], at <= 2% unasked -0.06 [-0.11, -0.01]
    assert report["b_minus_a"]["rule_adults_25plus_asked"]["ci95"][1] < 0
    assert report["b_minus_a"]["adults_25plus_asked_at_minors_not_asked<=0.02"]["value"] < 0

    checked = tmp_path / "id_check.json"
    proc = subprocess.run([sys.executable, "bench/id_check.py", "--predictions", str(folder), "--decide-on", "chance",
                           "--out", str(checked)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rules = json.loads(checked.read_text())["rules"]
    for key, kind in (("a", "age"), ("b", "chance")):
        for level in ("0.02", "0.05", "0.1"):
            assert report[key][f"adults_25plus_asked_at_minors_not_asked<={level}"]["value"] == pytest.approx(
                rules[kind]["test_adults_25plus_asked_at"][f"minors_not_asked<={level}"], abs=1e-4), (kind, level)

    write_predictions(tmp_path / "regression", np.arange(13.0, 73.0), noise=3.0, seed=0)
    proc = subprocess.run([sys.executable, "bench/compare.py", str(tmp_path / "regression"), str(tmp_path / "regression"),
                           "--rule-b", "chance", "--out", str(tmp_path / "no.json")], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and "the chance rule needs" in proc.stderr and not (tmp_path / "no.json").exists()


def run_ensemble(out_dir: Path, *members: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "bench/ensemble.py", *map(str, members), "--out-dir", str(out_dir)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def test_ensemble_averages_the_members_face_by_face(tmp_path: Path) -> None:
    """The ensemble's estimate of each face is the mean of its members', matched by file name even when a member
    lists the faces in another order; two members with independent errors average to a lower MAE."""
    import pandas as pd

    rng = np.random.default_rng(4)
    ages = rng.integers(13, 80, 400).astype(float)
    write_predictions(tmp_path / "a", ages, noise=6.0, seed=5)
    write_predictions(tmp_path / "b", ages, noise=6.0, seed=6)
    for split in ("val", "test"):   # member b lists its faces in another order
        path = tmp_path / "b" / f"predictions_{split}.csv"
        pd.read_csv(path).sample(frac=1.0, random_state=0).to_csv(path, index=False)
    proc = run_ensemble(tmp_path / "ab", tmp_path / "a", tmp_path / "b")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for split in ("val", "test"):
        a, b, ab = (pd.read_csv(tmp_path / d / f"predictions_{split}.csv").set_index("file") for d in ("a", "b", "ab"))
        expected = (a["predicted"] + b.loc[a.index, "predicted"]) / 2
        np.testing.assert_allclose(ab.loc[a.index, "predicted"], expected, atol=0.006)
        assert ab["age"].equals(a["age"])
        mae = {k: float(np.mean(np.abs(f["predicted"] - f["age"]))) for k, f in (("a", a), ("b", b), ("ab", ab))}
        assert mae["ab"] < 0.85 * min(mae["a"], mae["b"])   # independent errors: about 1/sqrt(2)


@pytest.mark.parametrize(("tool", "message"), [("compare", "error: not the same test faces"),
                                               ("ensemble", "faces differ from")])
def test_compare_and_ensemble_refuse_runs_of_different_splits(tmp_path: Path, tool: str, message: str) -> None:
    """The same file names with other ages: a one-line error (exit 2), and no report or predictions written."""
    ages = np.arange(13, 73, dtype=float)
    write_predictions(tmp_path / "a", ages, noise=3.0, seed=0)
    write_predictions(tmp_path / "b", ages[::-1].copy(), noise=3.0, seed=0)
    if tool == "compare":
        proc, written = run_compare(tmp_path / "a", tmp_path / "b", tmp_path / "ab.json"), tmp_path / "ab.json"
    else:
        proc, written = run_ensemble(tmp_path / "ab", tmp_path / "a", tmp_path / "b"), tmp_path / "ab" / "predictions_val.csv"
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert message in proc.stderr.strip().splitlines()[-1]
    assert not written.exists()
