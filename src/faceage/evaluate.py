"""Stage `evaluate`: test-split metrics, per-group errors, the alcohol ID check and diagnostic figures.

Reads params section `evaluate`; writes results/evaluate/ and logs to the MLflow run of the train stage.
`evaluate_external` scores a trained model on any other dataset in a supported layout.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from faceage import figures
from faceage.ages import age_group
from faceage.config import EvaluateConfig, PolicyConfig, PredictConfig, to_flat_dict
from faceage.data.layouts import UTK_GENDERS, UTK_RACES
from faceage.data.prepared import load_prepared
from faceage.errors import DataError
from faceage.estimates import Estimates
from faceage.inference import estimate, input_size, load_model
from faceage.metrics import by_attribute, id_check, id_rates, per_group, regression_metrics
from faceage.policy import POLICY_FILE, Policy, calibrate, tradeoff

OUT_DIR = Path("results/evaluate")


def json_safe(value: object) -> object:
    """JSON-safe, at any depth of dicts and lists: NaN -> None, floats rounded to 4 places, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else round(float(value), 4)
    if isinstance(value, np.integer):
        return int(value)
    return value


def score(true: np.ndarray, est: Estimates, cfg: EvaluateConfig, baseline_age: float | None,
          policy: Policy | None = None, rows: pd.DataFrame | None = None) -> tuple[dict, pd.DataFrame]:
    """All metrics of one evaluation: (metrics dict, per-group table).

    With a calibrated `policy`, its rule is scored too, overall and, where the rows carry UTKFace gender and
    race codes, per group (the fairness of the decision).
    """
    pred = est.ages
    groups = per_group(true, pred)
    metrics: dict = {**regression_metrics(true, pred), "n_test": int(len(true))}
    if baseline_age is not None:
        metrics["baseline_age"] = float(baseline_age)
        metrics["baseline_mae"] = float(np.mean(np.abs(true - baseline_age)))
    metrics["id_check"] = {"threshold": cfg.id_check_threshold, "legal_age": cfg.legal_age,
                           "youngest_minor": cfg.youngest_minor,
                           **id_check(true, pred, cfg.legal_age, cfg.id_check_threshold, cfg.youngest_minor)}
    metrics["by_group"] = {r.group: {"n": r.n, "mae": r.mae, "mean_signed_error": r.mean_signed_error}
                           for r in groups.itertuples()}
    if policy is not None:
        asked = policy.ask(est)
        rates = id_rates(true, asked, policy.legal_age, policy.youngest_minor)
        metrics["policy"] = {"decide_on": policy.decide_on, "threshold": policy.threshold, "rule": policy.rule,
                             "met_on_val": policy.met_on_val,
                             "max_minors_not_asked": policy.max_minors_not_asked,
                             "val_minors_not_asked": policy.val_minors_not_asked,
                             "val_adults_25plus_asked": policy.val_adults_25plus_asked, **rates}
        for column, names in (("gender", UTK_GENDERS), ("race", UTK_RACES)):
            if rows is not None and column in rows and rows[column].notna().any():
                labels = rows[column].astype("string").fillna("").to_numpy(dtype=object)
                metrics["policy"][f"by_{column}"] = by_attribute(true, pred, asked, labels, names, policy.legal_age,
                                                                    policy.youngest_minor)
    return json_safe(metrics), groups


def write_outputs(out_dir: Path, rows: pd.DataFrame, true: np.ndarray, est: Estimates, metrics: dict,
                  groups: pd.DataFrame, history: pd.DataFrame | None, cfg: EvaluateConfig,
                  policy: Policy | None = None) -> list[Path]:
    """metrics.json, predictions.csv, per_group.csv, id_tradeoff.csv and the figures; returns the figure paths.

    A model that says how sure it is (dex or gaussian head) also gets p_minor (P(age < legal age)) and, for
    gaussian, the spread per face, and the trade-off of the chance rule."""
    pred = est.ages
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    predictions = pd.DataFrame({"file": rows["file"].to_numpy(), "age": true, "predicted": np.round(pred, 2),
                                "error": np.round(pred - true, 2), "group": age_group(true)})
    if est.spread is not None:
        predictions["spread"] = np.round(est.spread, 2)
    if est.gives_chance:
        predictions["p_minor"] = np.round(est.p_under(cfg.legal_age), 5)
    predictions.to_csv(out_dir / "predictions.csv", index=False)
    groups.round(4).to_csv(out_dir / "per_group.csv", index=False)
    minors = f"minors ({cfg.youngest_minor}-{cfg.legal_age - 1})"
    table = tradeoff(true, est, cfg.legal_age, youngest_minor=cfg.youngest_minor)
    table.round(4).to_csv(out_dir / "id_tradeoff.csv", index=False)
    points = {"store rule": cfg.id_check_threshold,
              **({"calibrated": policy.threshold} if policy and policy.decide_on == "age" else {})}
    plots = out_dir / "plots"
    paths = [figures.predicted_vs_true(true, pred, plots / "predicted_vs_true.png"),
             figures.error_by_group(groups, plots / "error_by_group.png"),
             figures.id_tradeoff(table, points, plots / "id_tradeoff.png", minors=minors)]
    if est.gives_chance:
        chances = tradeoff(true, est, cfg.legal_age, "chance", youngest_minor=cfg.youngest_minor)
        chance_points = {"calibrated": policy.threshold} if policy and policy.decide_on == "chance" else {}
        paths.append(figures.id_tradeoff(chances, chance_points, plots / "id_tradeoff_chance.png", minors=minors,
                                         decide_on="chance"))
    if history is not None:
        paths.append(figures.learning_curve(history, plots / "learning_curve.png"))
    return paths


def run_evaluate(cfg: EvaluateConfig, policy_cfg: PolicyConfig, predict_cfg: PredictConfig, prepare_dir: Path,
                 train_dir: Path, out_dir: Path = OUT_DIR) -> dict:
    """The evaluate stage: calibrate the ID-check rule on val, score the test split, log to the train run,
    log the serving model and register it (the `champion` alias moves only to a better model)."""
    import mlflow

    from faceage.registry import register_and_promote, rescore_on, testset_fingerprint
    from faceage.serve import log_serving_model

    data = load_prepared(prepare_dir)
    test = data.split("test")
    if len(test.ages) == 0:
        raise DataError(f"{prepare_dir}: the test split is empty; raise prepare.test_fraction or add data")
    baseline_age = float(np.median(data.split("train").ages))
    model = load_model(train_dir / "model.keras")
    val = data.split("val")
    policy = calibrate(val.ages, estimate(model, val.images, cfg.batch_size, cfg.tta_flip), cfg.legal_age,
                       policy_cfg.max_minors_not_asked, cfg.youngest_minor, policy_cfg.decide_on)
    est = estimate(model, test.images, cfg.batch_size, cfg.tta_flip)
    metrics, groups = score(test.ages, est, cfg, baseline_age, policy, test.rows)
    history_path = train_dir / "history.csv"
    history = pd.read_csv(history_path) if history_path.is_file() else None
    out_dir.mkdir(parents=True, exist_ok=True)
    policy.save(out_dir / POLICY_FILE)
    plot_paths = write_outputs(out_dir, test.rows, test.ages, est, metrics, groups, history, cfg, policy)

    with _evaluation_run(train_dir):
        _log_evaluation(cfg, policy_cfg, metrics, plot_paths, prepare_dir, out_dir)
        serving = log_serving_model(train_dir / "model.keras", out_dir / POLICY_FILE, predict_cfg, cfg.tta_flip)
        registry = register_and_promote(serving.model_uri, metrics["mae"], testset_fingerprint(test.rows),
                                        rescore_on(test.images, test.ages, cfg.batch_size, cfg.tta_flip))
        mlflow.set_tags({"registry.version": registry["version"], "registry.champion": registry["promoted"]})
    (out_dir / "registry.json").write_text(json.dumps(registry, indent=2) + "\n")
    metrics["registry"] = registry
    return metrics


def _evaluation_run(train_dir: Path):
    """The train stage's MLflow run, resumed; a run of its own when that one is not in this store."""
    import mlflow

    from faceage.tracking import configure_tracking, load_run_id, run_tags

    experiment_id = configure_tracking()
    run_id = load_run_id(train_dir)
    if run_id:
        try:
            return mlflow.start_run(run_id=run_id)
        except mlflow.exceptions.MlflowException:
            pass
    return mlflow.start_run(experiment_id=experiment_id, tags=run_tags({"faceage.note": "train run not found in this store"}))


def _log_evaluation(cfg: EvaluateConfig, policy_cfg: PolicyConfig, metrics: dict, plot_paths: list[Path],
                    prepare_dir: Path, out_dir: Path) -> None:
    """Params, test metrics (flattened, prefixed test_) and the figures and tables, to the active run."""
    import mlflow

    mlflow.log_params({**to_flat_dict(cfg, "evaluate."), **to_flat_dict(policy_cfg, "policy.")})
    flat = pd.json_normalize(metrics, sep="_").iloc[0].to_dict()
    mlflow.log_metrics({f"test_{k}".replace("+", "plus"): float(v) for k, v in flat.items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)})
    for path in plot_paths:
        mlflow.log_artifact(str(path), artifact_path="plots")
    for path in sorted((prepare_dir / "eda").glob("*.png")):
        mlflow.log_artifact(str(path), artifact_path="eda")
    for name in ("predictions.csv", "id_tradeoff.csv", POLICY_FILE):
        mlflow.log_artifact(str(out_dir / name))
    mlflow.log_artifact(str(prepare_dir / "report.json"), artifact_path="data")


def evaluate_external(data_dir: Path, model_path: Path, cfg: EvaluateConfig, out_dir: Path,
                      layout: str = "auto", target: str = "real", progress: bool = True,
                      policy: Policy | None = None) -> dict:
    """Score a trained model on every usable image of another dataset (no split, no baseline).

    `policy` (the rule calibrated with the model) is scored as it stands: this data is not used to calibrate.
    """
    from faceage.data.layouts import read_dataset
    from faceage.prepare import decode_all, write_quarantine

    model = load_model(model_path)
    dataset = read_dataset(data_dir, layout, target)
    manifest = dataset.manifest.sort_values("file", kind="stable").reset_index(drop=True)
    decoded = decode_all(data_dir, manifest["file"].tolist(), input_size(model), progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_quarantine(list(map(tuple, dataset.problems.itertuples(index=False))) + decoded.problems, out_dir)
    rows = manifest[decoded.ok].reset_index(drop=True)
    if rows.empty:
        raise DataError(f"{data_dir}: no usable images; see {out_dir / 'quarantine.csv'}")
    true = rows["age"].to_numpy(dtype="float32")
    est = estimate(model, decoded.images, cfg.batch_size, cfg.tta_flip)
    metrics, groups = score(true, est, cfg, baseline_age=None, policy=policy, rows=rows)
    write_outputs(out_dir, rows, true, est, metrics, groups, None, cfg, policy)
    return metrics
