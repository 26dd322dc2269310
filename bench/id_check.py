"""The alcohol ID check of a trained model, from its saved validation and test predictions: the rule calibrated
on validation (never on test), what it reaches on test with 95% confidence bounds, the trade-off table, and the
same rates per gender and race. No training: it re-reads what bench/quality.py saved, so different minor bands,
targets or rules can be compared on one model in seconds.

    .venv/bin/python bench/id_check.py                                  # results/bench/quality-work/predictions_*.csv
    .venv/bin/python bench/id_check.py --youngest-minor 0 --out /tmp/all-minors.json

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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from faceage.config import load_params

    params = load_params()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--predictions", type=Path, default=Path("results/bench/quality-work"),
                    help="folder with predictions_val.csv and predictions_test.csv (columns age, predicted[, gender, race])")
    ap.add_argument("--legal-age", type=int, default=params.evaluate.legal_age)
    ap.add_argument("--youngest-minor", type=int, default=params.evaluate.youngest_minor)
    ap.add_argument("--max-minors-not-asked", type=float, default=params.policy.max_minors_not_asked)
    ap.add_argument("--out", type=Path, default=Path("results/bench/id_check.json"))
    return ap.parse_args(argv)


def read_predictions(folder: Path, split: str) -> pd.DataFrame:
    from faceage.errors import DataError

    path = folder / f"predictions_{split}.csv"
    if not path.is_file():
        raise DataError(f"{path}: not found; run bench/quality.py first (it saves both splits' predictions)")
    frame = pd.read_csv(path, dtype={"gender": "string", "race": "string"})
    missing = {"age", "predicted"} - set(frame.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    return frame


def main(argv: list[str] | None = None) -> int:
    from faceage import figures
    from faceage.data.layouts import UTK_GENDERS, UTK_RACES
    from faceage.evaluate import _clean
    from faceage.metrics import by_attribute, id_check
    from faceage.policy import calibrate, tradeoff

    args = parse_args(argv)
    val, test = read_predictions(args.predictions, "val"), read_predictions(args.predictions, "test")
    band = (args.youngest_minor, args.legal_age)
    policy = calibrate(val["age"].to_numpy(float), val["predicted"].to_numpy(float), args.legal_age,
                       args.max_minors_not_asked, args.youngest_minor)
    true, pred = test["age"].to_numpy(float), test["predicted"].to_numpy(float)
    reached = id_check(true, pred, args.legal_age, policy.threshold, args.youngest_minor)
    fairness = {}
    for column, names in (("gender", UTK_GENDERS), ("race", UTK_RACES)):
        if column in test and test[column].notna().any():
            labels = test[column].fillna("").astype(str).str.replace(r"\.0$", "", regex=True).to_numpy(dtype=object)
            fairness[column] = by_attribute(true, pred, labels, names, args.legal_age, policy.threshold, args.youngest_minor)
    table = tradeoff(true, pred, args.legal_age, youngest_minor=args.youngest_minor)
    at = {f"T={t:g}": id_check(true, pred, args.legal_age, t, args.youngest_minor) for t in (25.0, 30.0, 35.0, 40.0)}
    report = {
        "minors": f"{band[0]}-{band[1] - 1}", "target_max_minors_not_asked": args.max_minors_not_asked,
        "policy": {"threshold": policy.threshold, "met_on_val": policy.met_on_val,
                   "val_minors_not_asked": policy.val_minors_not_asked, "val_n_minors": policy.val_n_minors,
                   "val_adults_25plus_asked": policy.val_adults_25plus_asked},
        "test": reached, "fairness_test": fairness, "fixed_rules_test": at,
        "tradeoff_test": table.round(4).to_dict(orient="list"),
        "predictions": str(args.predictions), "n_val": len(val), "n_test": len(test),
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(_clean(report), indent=2) + "\n")
    figures.id_tradeoff(table, {"store rule": 25.0, "calibrated": policy.threshold}, args.out.with_suffix(".png"),
                        minors=f"minors ({report['minors']})", title="ID check trade-off, real faces (test split)")
    print(f"minors {report['minors']}: calibrated T={policy.threshold:g} on val ({policy.val_n_minors} minors, "
          f"{policy.val_minors_not_asked:.1%} not asked; met: {policy.met_on_val}); on test "
          f"{reached['minors_not_asked']:.1%} of {reached['n_minors']} minors not asked "
          f"(95% upper bound {reached['minors_not_asked_upper95']:.1%}), {reached['adults_25plus_asked']:.1%} of adults 25+ asked")
    for column, groups in fairness.items():
        print(f"  by {column}: " + "; ".join(f"{k} {v['minors_not_asked']:.1%} of {v['n_minors']}" for k, v in groups.items()
                                              if v["n_minors"]))
    print(f"report {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
