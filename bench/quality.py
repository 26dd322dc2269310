"""Quality benchmark on real faces: the project's own prepare -> train -> evaluate code on the shared UTKFace
sample, under a CPU time budget, next to a constant baseline computed in the same run.

    .venv/bin/python bench/quality.py                     # the real run: 60 min of training (2 cores)
    .venv/bin/python bench/quality.py --tiny              # CI smoke mode: 300 faces, 1 epoch, tiny backbone

Writes results/bench/quality.json (or --out) and logs one MLflow run in the experiment "faceage-bench".
The UTKFace images are read in place from ../shared (licence: non-commercial research; never copied here).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from faceage.config import PrepareConfig, to_flat_dict  # noqa: E402
from faceage.errors import DataError  # noqa: E402

from common import UTKFACE_IMAGES, add_set_option, images_found, load_params_with, machine_summary, run_main, subset_dir  # noqa: E402  (bench/common.py, beside this script)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, default=UTKFACE_IMAGES, help="UTKFace images folder")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"), help="train/evaluate settings to use")
    ap.add_argument("--budget-minutes", type=float, default=60.0, help="training wall-clock budget")
    ap.add_argument("--max-epochs", type=int, default=200)
    ap.add_argument("--tiny", action="store_true", help="smoke mode: 300 faces, 1 epoch, 32 px, the tiny backbone")
    ap.add_argument("--out", type=Path, default=Path("results/bench/quality.json"))
    ap.add_argument("--work-dir", type=Path, default=Path("results/bench/quality-work"))
    add_set_option(ap)  # train.*, evaluate.*, policy.* or prepare.image_size
    return ap.parse_args(argv)


FIXED_PREPARE = "the benchmark fixes its data and split (UTKFace layout, 70/15/15, seed 42)"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not images_found(args.images):
        return 2
    for key in (item.partition("=")[0] for item in args.set):
        if key.startswith("prepare.") and key != "prepare.image_size":
            raise SystemExit(f"error: --set {key}: {FIXED_PREPARE}; only prepare.image_size can change")
    params = load_params_with(args.params, args.set)
    if args.tiny:
        train_cfg = dataclasses.replace(params.train, epochs=1, time_budget_minutes=0.0, batch_size=16,
                                        backbone="tiny_cnn")
        image_size, data_dir = 32, subset_dir(args.images, 300, seed=0)
    else:
        train_cfg = dataclasses.replace(params.train, epochs=args.max_epochs, time_budget_minutes=args.budget_minutes)
        image_size, data_dir = params.prepare.image_size, args.images
    prep_cfg = PrepareConfig(data_dir=str(data_dir), layout="utkface", image_size=image_size,
                             val_fraction=0.15, test_fraction=0.15, max_bad_fraction=0.01, seed=42)
    return run(args, prep_cfg, train_cfg, params.evaluate, params.policy)


def run(args: argparse.Namespace, prep_cfg: PrepareConfig, train_cfg, eval_cfg, policy_cfg) -> int:
    import mlflow

    from faceage.data.layouts import UTK_GENDERS, UTK_RACES
    from faceage.data.prepared import load_prepared
    from faceage.evaluate import json_safe, score
    from faceage.inference import estimate
    from faceage.metrics import by_attribute
    from faceage.policy import calibrate, tradeoff
    from faceage.prepare import run_prepare
    from faceage.tracking import configure_tracking, run_tags
    from faceage.train import fit

    t0 = time.perf_counter()
    prep_dir = args.work_dir / "prepare"
    report = run_prepare(prep_cfg, prep_dir)
    prepare_s = time.perf_counter() - t0
    data = load_prepared(prep_dir)
    train, val, test = data.split("train"), data.split("val"), data.split("test")
    if len(test.ages) == 0:
        raise DataError("the test split is empty")

    os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", "faceage-bench")
    experiment_id = configure_tracking()
    with mlflow.start_run(experiment_id=experiment_id, run_name="quality-tiny" if args.tiny else "quality",
                          tags=run_tags({"bench": "quality", "data": "utkface-sample"})):
        mlflow.log_params(to_flat_dict(train_cfg, "train."))
        result = fit(train_cfg, train, val, callbacks=[mlflow.keras.MlflowCallback()], verbose=2)
        plain_estimates = estimate(result.model, test.images, eval_cfg.batch_size, tta_flip=False)
        tta_estimates = estimate(result.model, test.images, eval_cfg.batch_size, tta_flip=True)
        plain, tta = plain_estimates.ages, tta_estimates.ages
        test_estimates = tta_estimates if eval_cfg.tta_flip else plain_estimates
        pred = test_estimates.ages
        val_estimates = estimate(result.model, val.images, eval_cfg.batch_size, tta_flip=eval_cfg.tta_flip)
        pred_val = val_estimates.ages
        policy = calibrate(val.ages, val_estimates, eval_cfg.legal_age, policy_cfg.max_minors_not_asked,
                           eval_cfg.youngest_minor, policy_cfg.decide_on)
        baseline_age = float(np.median(train.ages))
        metrics, _ = score(test.ages, test_estimates, eval_cfg, baseline_age, policy, test.rows)
        rows = test.rows
        # Kept for later analysis (not in git): the model and both splits' predictions.
        result.model.save(args.work_dir / "model.keras")
        # dex and gaussian heads also give P(age < legal age) per face (p_minor), for rules on the chance of being
        # a minor; what it comes from is kept too (the distributions in probs_<split>.npy, or the spread column).
        for name, split, est in (("val", val, val_estimates), ("test", test, test_estimates)):
            rows_out = split.rows.assign(predicted=np.round(est.ages, 2))
            if est.spread is not None:
                rows_out["spread"] = np.round(est.spread, 3)
            if est.gives_chance:
                rows_out["p_minor"] = np.round(est.p_under(eval_cfg.legal_age), 5)
            if est.probs is not None:
                np.save(args.work_dir / f"probs_{name}.npy", est.probs)
            rows_out.to_csv(args.work_dir / f"predictions_{name}.csv", index=False)
        check = metrics["id_check"]
        store_asked = pred < eval_cfg.id_check_threshold
        summary = {
            "mae": metrics["mae"], "baseline_mae": metrics["baseline_mae"], "baseline_age": baseline_age,
            "cs5": metrics["cs5"], "rmse": metrics["rmse"], "median_ae": metrics["median_ae"],
            "mae_plain": round(float(np.mean(np.abs(plain - test.ages))), 4),
            "mae_tta_flip": round(float(np.mean(np.abs(tta - test.ages))), 4),
            "tta_flip_used": eval_cfg.tta_flip,
            "mae_by_group": metrics["by_group"],
            "minors_not_asked": check["minors_not_asked"], "adults_asked": check["adults_asked"],
            "adults_25plus_asked": check["adults_25plus_asked"], "id_check": check,
            "by_gender": by_attribute(test.ages, pred, store_asked, rows["gender"].fillna("").astype(str).to_numpy(),
                                      UTK_GENDERS, eval_cfg.legal_age, eval_cfg.youngest_minor),
            "by_race": by_attribute(test.ages, pred, store_asked, rows["race"].fillna("").astype(str).to_numpy(),
                                    UTK_RACES, eval_cfg.legal_age, eval_cfg.youngest_minor),
            "policy": metrics["policy"],
            "id_tradeoff_test": tradeoff(test.ages, test_estimates, eval_cfg.legal_age,
                                         youngest_minor=eval_cfg.youngest_minor).round(4).to_dict(orient="list"),
            "train_minutes": round(result.seconds / 60, 2), "epochs": int(len(result.history)), "precision": result.precision,
            "best_epoch": result.best_epoch, "best_val_mae": round(result.best_val_mae, 4),
            "n_train": int(len(train.ages)), "n_val": int(len(val.ages)), "n_test": int(len(test.ages)),
            "n_quarantined": report["n_quarantined"], "prepare_seconds": round(prepare_s, 1),
            "image_size": prep_cfg.image_size, "tiny": args.tiny,
            "train": to_flat_dict(train_cfg), "history": result.history.round(4).to_dict(orient="list"),
            "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
            "machine": machine_summary(),
            "date": time.strftime("%Y-%m-%d %H:%M"),
        }
        mlflow.log_metrics({k: float(v) for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(json_safe(summary), indent=2) + "\n")
        mlflow.log_artifact(str(args.out))
    print(f"MAE {summary['mae']:.2f} (plain {summary['mae_plain']:.2f}, flip TTA {summary['mae_tta_flip']:.2f}) vs "
          f"constant baseline {summary['baseline_mae']:.2f} -> ratio {summary['mae'] / summary['baseline_mae']:.3f}; "
          f"CS@5 {summary['cs5']:.1%}; minors not asked (T={eval_cfg.id_check_threshold:g}) "
          f"{summary['minors_not_asked']}; calibrated rule '{policy.rule}' (met on val: {policy.met_on_val}): "
          f"minors not asked {summary['policy']['minors_not_asked']}, adults 25+ asked {summary['policy']['adults_25plus_asked']}; "
          f"{summary['epochs']} epochs in {summary['train_minutes']} min; report {args.out}")
    return 0


if __name__ == "__main__":
    run_main(main)
