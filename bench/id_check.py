"""The alcohol ID check of a trained model, from its saved validation and test predictions: the rule calibrated
on validation (never on test), what it reaches on test with 95% confidence bounds, the trade-off table, and the
same rates per gender and race. No training: it re-reads what bench/quality.py saved, so different minor bands,
targets or rules can be compared on one model in seconds. For a model that says how sure it is (a dex head:
bench/quality.py also saved probs_*.npy; a gaussian head: its predictions have a spread column) both rules are
compared: "ask when the estimated age is under T" and "ask when the chance of being a minor is at least p", each
calibrated on validation, and each rule's cost to adults on test at equal shares of minors not asked (read off the
test curves: for comparing the two kinds of rule, not for choosing one).

    .venv/bin/python bench/id_check.py                                  # results/bench/quality-work/predictions_*.csv
    .venv/bin/python bench/id_check.py --youngest-minor 0 --out /tmp/all-minors.json
    .venv/bin/python bench/id_check.py --predictions results/bench/quality-dex-work --decide-on chance \
        --out results/bench/id_check-dex.json

Writes results/bench/id_check.json and results/bench/id_check.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from common import run_main  # noqa: E402  (bench/common.py, beside this script)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from faceage.config import load_params

    params = load_params()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--predictions", type=Path, default=Path("results/bench/quality-work"),
                    help="folder with predictions_val.csv and predictions_test.csv (columns age, predicted[, gender, race])")
    ap.add_argument("--legal-age", type=int, default=params.evaluate.legal_age)
    ap.add_argument("--youngest-minor", type=int, default=params.evaluate.youngest_minor)
    ap.add_argument("--max-minors-not-asked", type=float, default=params.policy.max_minors_not_asked)
    ap.add_argument("--store-threshold", type=float, default=params.evaluate.id_check_threshold,
                    help="the store's fixed rule: ask for ID under this estimated age")
    ap.add_argument("--decide-on", choices=("age", "chance"), default=params.policy.decide_on,
                    help="the rule reported in detail (chance needs a dex model's probs_*.npy or a gaussian "
                         "model's spread column)")
    ap.add_argument("--out", type=Path, default=Path("results/bench/id_check.json"))
    return ap.parse_args(argv)


def read_predictions(folder: Path, split: str):
    """(rows, Estimates) of one split; the age distributions too when a dex model's probs_<split>.npy is there,
    the spread when a gaussian model's predictions have that column."""
    from faceage.errors import DataError
    from faceage.estimates import Estimates

    path = folder / f"predictions_{split}.csv"
    if not path.is_file():
        raise DataError(f"{path}: not found; run bench/quality.py first (it saves both splits' predictions)")
    frame = pd.read_csv(path, dtype={"gender": "string", "race": "string"})
    missing = {"age", "predicted"} - set(frame.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    probs_path = folder / f"probs_{split}.npy"
    probs = np.load(probs_path) if probs_path.is_file() else None
    if probs is not None and len(probs) != len(frame):
        raise DataError(f"{probs_path}: {len(probs)} rows but {path} has {len(frame)}; rerun bench/quality.py")
    spread = frame["spread"].to_numpy("float32") if "spread" in frame.columns else None
    return frame, Estimates(frame["predicted"].to_numpy("float32"), probs, spread)


MODEL_COLUMNS = ("predicted", "spread")   # per-model columns: the rest (file, age, gender, ...) describe the face


def matched_runs(frames: list[pd.DataFrame], where: list[Path], split: str) -> tuple[pd.DataFrame, np.ndarray]:
    """(the first run's rows without its per-model columns, the runs' estimates as faces x runs), matched by file
    name; a clear error when the runs did not score the same faces with the same ages (bench/compare.py pairs two
    runs this way, bench/ensemble.py averages several)."""
    from faceage.errors import DataError

    for frame, folder in zip(frames, where):
        if "file" not in frame.columns or frame["file"].duplicated().any():
            raise DataError(f"{folder}: predictions_{split}.csv needs a file column naming each face once (as "
                            "bench/quality.py writes it); rerun bench/quality.py")
    base = frames[0].drop(columns=[c for c in MODEL_COLUMNS if c in frames[0].columns])
    estimates = []
    for frame, folder in zip(frames, where):
        both = base[["file", "age"]].merge(frame[["file", "age", "predicted"]], on="file", how="left",
                                           suffixes=("", "_m"))
        if both["predicted"].isna().any() or len(frame) != len(base) or not np.array_equal(both["age"], both["age_m"]):
            raise DataError(f"not the same {split} faces: {folder}'s faces differ from {where[0]}'s ({len(frame)} vs "
                            f"{len(base)} faces, or other ages); use runs of the same split")
        estimates.append(both["predicted"].to_numpy(float))
    return base, np.stack(estimates, axis=1)


def cost_at_equal_safety(true: np.ndarray, est, legal_age: int, youngest_minor: int, decide_on: str,
                         levels: tuple[float, ...] = (0.0, 0.02, 0.05, 0.1)) -> dict[str, float | None]:
    """Share of adults 25+ asked by the cheapest rule of this kind with at most each share of minors not asked,
    read off the test curve (an oracle choice: it compares kinds of rule, it does not choose one)."""
    from faceage.policy import search_grid, tradeoff

    table = tradeoff(true, est, legal_age, decide_on, search_grid(decide_on, legal_age), youngest_minor)
    out: dict[str, float | None] = {}
    for level in levels:
        ok = table[table["minors_not_asked"] <= level + 1e-12]
        out[f"minors_not_asked<={level:g}"] = float(ok["adults_25plus_asked"].iloc[0]) if not ok.empty else None
    return out


def spread_report(true: np.ndarray, est, legal_age: int, youngest_minor: int, store_threshold: float) -> dict | None:
    """For a gaussian model: does its spread know when its age is off? The rank correlation of sigma with the
    absolute error, the mean sigma per age group, and the minors the store rule misses (estimated >= it) with
    their sigma and P(minor). None for other models."""
    from faceage.ages import age_group
    from faceage.metrics import minor_mask

    if est.spread is None:
        return None
    error = np.abs(est.ages - true)
    groups = pd.Series(est.spread).groupby(age_group(true)).mean()
    missed = minor_mask(true, legal_age, youngest_minor) & (est.ages >= store_threshold)
    p_minor = est.p_under(legal_age)
    return {
        "spearman_spread_vs_abs_error": float(pd.Series(est.spread).corr(pd.Series(error), method="spearman")),
        "mean_spread": float(np.mean(est.spread)),
        "mean_spread_by_group": {str(k): round(float(v), 2) for k, v in groups.items()},
        f"minors_estimated_{store_threshold:g}_or_older": [
            {"age": float(true[i]), "predicted": round(float(est.ages[i]), 1), "spread": round(float(est.spread[i]), 2),
             "p_minor": round(float(p_minor[i]), 4)} for i in np.flatnonzero(missed)],
    }


def main(argv: list[str] | None = None) -> int:
    from faceage import figures
    from faceage.data.layouts import UTK_GENDERS, UTK_RACES
    from faceage.evaluate import json_safe
    from faceage.errors import DataError
    from faceage.metrics import by_attribute, id_check, id_rates
    from faceage.policy import calibrate, tradeoff

    args = parse_args(argv)
    (val, val_est), (test, test_est) = read_predictions(args.predictions, "val"), read_predictions(args.predictions, "test")
    kinds = ("age", "chance") if test_est.gives_chance else ("age",)
    if args.decide_on not in kinds:
        raise DataError(f"{args.predictions}: no probs_*.npy and no spread column (a regression-head model): "
                        "--decide-on chance needs a dex or gaussian model")
    band = (args.youngest_minor, args.legal_age)
    true, pred = test["age"].to_numpy(float), test_est.ages
    policies = {kind: calibrate(val["age"].to_numpy(float), val_est, args.legal_age, args.max_minors_not_asked,
                                args.youngest_minor, kind) for kind in kinds}
    rules = {kind: {"rule": p.rule, "threshold": p.threshold, "met_on_val": p.met_on_val,
                    "val_minors_not_asked": p.val_minors_not_asked, "val_adults_25plus_asked": p.val_adults_25plus_asked,
                    "test": id_rates(true, p.ask(test_est), args.legal_age, args.youngest_minor),
                    "test_adults_25plus_asked_at": cost_at_equal_safety(true, test_est, args.legal_age,
                                                                        args.youngest_minor, kind)}
             for kind, p in policies.items()}
    policy = policies[args.decide_on]
    asked = policy.ask(test_est)
    reached = id_rates(true, asked, args.legal_age, args.youngest_minor)
    fairness = {}
    for column, names in (("gender", UTK_GENDERS), ("race", UTK_RACES)):
        if column in test and test[column].notna().any():
            labels = test[column].fillna("").astype(str).str.replace(r"\.0$", "", regex=True).to_numpy(dtype=object)
            fairness[column] = by_attribute(true, pred, asked, labels, names, args.legal_age, args.youngest_minor)
    table = tradeoff(true, test_est, args.legal_age, youngest_minor=args.youngest_minor)
    at = {f"T={t:g}": id_check(true, pred, args.legal_age, t, args.youngest_minor) for t in (25.0, 30.0, 35.0, 40.0)}
    report = {
        "minors": f"{band[0]}-{band[1] - 1}", "target_max_minors_not_asked": args.max_minors_not_asked,
        "mae_test": float(np.mean(np.abs(pred - true))),
        "policy": {"decide_on": policy.decide_on, "rule": policy.rule, "threshold": policy.threshold,
                   "met_on_val": policy.met_on_val,
                   "val_minors_not_asked": policy.val_minors_not_asked, "val_n_minors": policy.val_n_minors,
                   "val_adults_25plus_asked": policy.val_adults_25plus_asked},
        "test": reached, "fairness_test": fairness, "fixed_rules_test": at, "rules": rules,
        "spread_test": spread_report(true, test_est, args.legal_age, args.youngest_minor, args.store_threshold),
        "tradeoff_test": table.round(4).to_dict(orient="list"),
        "predictions": str(args.predictions), "n_val": len(val), "n_test": len(test),
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(json_safe(report), indent=2) + "\n")
    points = {"store rule": args.store_threshold, **({"calibrated": policy.threshold} if policy.decide_on == "age" else {})}
    figures.id_tradeoff(table, points, args.out.with_suffix(".png"),
                        minors=f"minors ({report['minors']})", title="ID check trade-off, real faces (test split)")
    if "chance" in kinds:
        chances = tradeoff(true, test_est, args.legal_age, "chance", youngest_minor=args.youngest_minor)
        figures.id_tradeoff(chances, {"calibrated": policies["chance"].threshold},
                            args.out.with_name(args.out.stem + "-chance.png"), minors=f"minors ({report['minors']})",
                            title="ID check on the chance of being a minor, real faces (test split)", decide_on="chance")
    for kind, r in rules.items():
        print(f"{kind:>6} rule calibrated on val: {r['rule']} -> test {r['test']['minors_not_asked']:.1%} minors not "
              f"asked, {r['test']['adults_25plus_asked']:.1%} adults 25+ asked; at equal safety on test: "
              + ", ".join(f"{k}: {'-' if v is None else f'{v:.1%}'}" for k, v in r["test_adults_25plus_asked_at"].items()))
    print(f"minors {report['minors']}: calibrated '{policy.rule}' on val ({policy.val_n_minors} minors, "
          f"{policy.val_minors_not_asked:.1%} not asked; met: {policy.met_on_val}); on test "
          f"{reached['minors_not_asked']:.1%} of {reached['n_minors']} minors not asked "
          f"(95% upper bound {reached['minors_not_asked_upper95']:.1%}), {reached['adults_25plus_asked']:.1%} of adults 25+ asked")
    for column, groups in fairness.items():
        print(f"  by {column}: " + "; ".join(f"{k} {v['minors_not_asked']:.1%} of {v['n_minors']}" for k, v in groups.items()
                                              if v["n_minors"]))
    print(f"report {args.out}")
    return 0


if __name__ == "__main__":
    run_main(main)
