"""Is model B better than model A, or is it noise? A paired bootstrap over the test faces of two bench/quality.py
runs (the benchmark fixes its split, so both models scored the same faces): the test MAE (all faces, and the
teenagers 13-17), and the alcohol ID check: each model's rule calibrated on its own validation predictions (as
evaluate does), what that rule reaches on test, and each model's cost to adults 25+ at equal shares of teenagers
not asked (read off the test curve, as bench/id_check.py does). The rule is "ask under an age" by default;
`--rule-a/--rule-b chance` use "ask when P(age < 18) >= p" of a model that says how sure it is (dex or gaussian),
so one model's two rules can be compared on the same faces too (A and B the same folder). Every figure comes with a 95% interval over
resampled test faces, and the difference B - A with its interval says whether this test set can tell the two apart.

What it cannot show: how much one setup moves with its training seed (the test faces are resampled, the models
are not retrained); run bench/quality.py again with `--set train.seed=N` for that.

    .venv/bin/python bench/compare.py results/bench/quality-seed7-work results/bench/quality-size80-work \
        --out results/bench/compare-seed7-size80.json
    .venv/bin/python bench/compare.py results/bench/quality-batch128-gaussian-detached-work \
        results/bench/quality-batch128-gaussian-detached-work --rule-b chance \
        --out results/bench/compare-detached-age-vs-chance.json

No training and no images: it reads the predictions_{val,test}.csv that bench/quality.py saved.
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
from id_check import matched_runs, read_predictions  # noqa: E402  (bench/id_check.py)

RULES = ("age", "chance")

LEVELS = (0.02, 0.05, 0.1)   # shares of teenagers not asked at which the models' costs to adults are compared


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from faceage.config import load_params

    params = load_params()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path, help="model A's folder of predictions_val.csv and predictions_test.csv")
    ap.add_argument("b", type=Path, help="model B's folder (the same split)")
    ap.add_argument("--rule-a", choices=RULES, default="age", help="A's ID-check rule (chance: a dex or gaussian model)")
    ap.add_argument("--rule-b", choices=RULES, default="age", help="B's ID-check rule")
    ap.add_argument("--rounds", type=int, default=2000, help="bootstrap resamples of the test faces")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--legal-age", type=int, default=params.evaluate.legal_age)
    ap.add_argument("--youngest-minor", type=int, default=params.evaluate.youngest_minor)
    ap.add_argument("--max-minors-not-asked", type=float, default=params.policy.max_minors_not_asked)
    ap.add_argument("--out", type=Path, default=Path("results/bench/compare.json"))
    args = ap.parse_args(argv)
    if args.rounds < 100:
        ap.error(f"--rounds {args.rounds}: at least 100 resamples are needed for a 95% interval")
    return args


def cheapest_cost(true: np.ndarray, score: np.ndarray, legal_age: int, youngest_minor: int, level: float,
                  decide_on: str = "age") -> float:
    """Share of adults 25+ asked by the cheapest rule of its kind (on the calibration grid) that leaves at most
    `level` of the minors unasked; NaN when there are no minors or no rule on the grid does it. `score` is the
    estimated age ("ask under T") or P(minor) ("ask when P >= p", decide_on chance). The closed form of
    bench/id_check.py's cost_at_equal_safety, which scans the whole grid through policy.tradeoff: too slow for
    thousands of resamples (the tests check that both give the same figures)."""
    from faceage.metrics import minor_mask
    from faceage.policy import CHANCE_GRID, SEARCH_MAX, SEARCH_STEP

    minors = np.sort(score[minor_mask(true, legal_age, youngest_minor)])
    if len(minors) == 0:
        return float("nan")
    k = int(np.floor(level * len(minors) + 1e-9))       # minors that may stay unasked
    adults25 = true >= 25
    if not adults25.any():
        return float("nan")
    if decide_on == "chance":                           # unasked: P < p, so p may rise to the (k+1)-th lowest P
        allowed = CHANCE_GRID[0] if k >= len(minors) else minors[k]
        fitting = CHANCE_GRID[CHANCE_GRID <= allowed]   # the grid runs from the cheapest (highest) p down
        return float(np.mean(score[adults25] >= fitting[0])) if fitting.size else float("nan")
    teens = minors[::-1]                                # unasked: estimated >= T
    threshold = legal_age if k >= len(teens) else max(legal_age, (np.floor(teens[k] / SEARCH_STEP) + 1) * SEARCH_STEP)
    if threshold > SEARCH_MAX + 1e-9:
        return float("nan")
    return float(np.mean(score[adults25] < threshold))


def statistics(true: np.ndarray, pred: np.ndarray, score: np.ndarray, asked: np.ndarray, rows: np.ndarray,
               legal_age: int, youngest_minor: int, decide_on: str) -> dict[str, np.ndarray]:
    """Each statistic (lower is better for all) on each row of face indices `rows` (rounds x faces): the MAE of
    the ages `pred`, the calibrated rule's decisions `asked`, and the cost at equal safety of rules on `score`."""
    from faceage.metrics import minor_mask

    err, asked_r = np.abs(pred - true)[rows], asked[rows]
    minors, adults25 = minor_mask(true, legal_age, youngest_minor)[rows], (true >= 25)[rows]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {"mae": err.mean(axis=1),
               "mae_minors": (err * minors).sum(axis=1) / minors.sum(axis=1),
               "rule_minors_not_asked": (~asked_r & minors).sum(axis=1) / minors.sum(axis=1),
               "rule_adults_25plus_asked": (asked_r & adults25).sum(axis=1) / adults25.sum(axis=1)}
    for level in LEVELS:
        out[f"adults_25plus_asked_at_minors_not_asked<={level:g}"] = np.array(
            [cheapest_cost(true[r], score[r], legal_age, youngest_minor, level, decide_on) for r in rows])
    return out


def aligned(frame: pd.DataFrame, est, files: pd.Series):
    """One run's Estimates (rows `frame`), in the order of `files` (the paired faces), with its probs or spread."""
    from faceage.estimates import Estimates

    order = pd.Series(np.arange(len(frame)), index=frame["file"]).loc[files].to_numpy()
    return Estimates(est.ages[order], None if est.probs is None else est.probs[order],
                     None if est.spread is None else est.spread[order])


def rule_score(est, decide_on: str, legal_age: int, folder: Path) -> np.ndarray:
    """What the rule thresholds: the age, or P(age < legal age) (a clear error for a plain regression run)."""
    from faceage.errors import DataError

    if decide_on == "age":
        return np.asarray(est.ages, float)
    if not est.gives_chance:
        raise DataError(f"{folder}: the chance rule needs a dex model's probs_*.npy or a gaussian model's spread "
                        "column; this run has neither (a regression head): use --rule-a/--rule-b age")
    return np.asarray(est.p_under(legal_age), float)


def interval(values: np.ndarray) -> list[float] | None:
    """The 95% percentile interval of the resampled values; None when no resample could compute it."""
    finite = values[~np.isnan(values)]
    if finite.size == 0:
        return None
    low, high = np.percentile(finite, [2.5, 97.5])
    return [round(float(low), 4), round(float(high), 4)]


def shown(entry: dict, sign: str = "") -> str:
    """'value [low, high]' for the printed table; '-' where a figure could not be computed."""
    if entry["ci95"] is None or np.isnan(entry["value"]):
        return "-"
    low, high = entry["ci95"]
    return f"{entry['value']:{sign}.3f} [{low:{sign}.3f}, {high:{sign}.3f}]"


def main(argv: list[str] | None = None) -> int:
    from faceage.evaluate import json_safe
    from faceage.policy import calibrate

    args = parse_args(argv)
    tests = {"a": read_predictions(args.a, "test"), "b": read_predictions(args.b, "test")}
    faces, _ = matched_runs([tests["a"][0], tests["b"][0]], [args.a, args.b], "test")
    true = faces["age"].to_numpy(float)
    rows = np.random.default_rng(args.seed).integers(0, len(true), size=(args.rounds, len(true)))
    everyone = np.arange(len(true))[None, :]
    report: dict = {}
    boot: dict[str, dict[str, np.ndarray]] = {}
    for key, folder, decide_on in (("a", args.a, args.rule_a), ("b", args.b, args.rule_b)):
        val, val_est = read_predictions(folder, "val")
        rule_score(val_est, decide_on, args.legal_age, folder)     # the clear error before calibrating
        policy = calibrate(val["age"].to_numpy(float), val_est, args.legal_age, args.max_minors_not_asked,
                           args.youngest_minor, decide_on)
        est = aligned(*tests[key], faces["file"])
        pred, score, asked = np.asarray(est.ages, float), rule_score(est, decide_on, args.legal_age, folder), policy.ask(est)
        point = statistics(true, pred, score, asked, everyone, args.legal_age, args.youngest_minor, decide_on)
        boot[key] = statistics(true, pred, score, asked, rows, args.legal_age, args.youngest_minor, decide_on)
        report[key] = {"predictions": str(folder), "decide_on": decide_on, "rule": policy.rule,
                       "met_on_val": policy.met_on_val,
                       **{name: {"value": round(float(point[name][0]), 4), "ci95": interval(boot[key][name])}
                          for name in point}}
    diff = {}
    for name in boot["a"]:
        delta = boot["b"][name] - boot["a"][name]
        diff[name] = {"value": round(report["b"][name]["value"] - report["a"][name]["value"], 4), "ci95": interval(delta),
                      "share_of_rounds_b_lower": round(float(np.mean(delta[~np.isnan(delta)] < 0)), 4)}
    report = {**report, "b_minus_a": diff, "n_test": len(true), "rounds": args.rounds, "seed": args.seed,
              "minors": f"{args.youngest_minor}-{args.legal_age - 1}",
              "note": "95% intervals over resampled test faces (paired); training-seed variation is not in them",
              "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
              "date": time.strftime("%Y-%m-%d %H:%M")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(json_safe(report), indent=2) + "\n")
    print(f"A = {args.a}\nB = {args.b}\n{len(true)} test faces, {args.rounds} paired resamples (95% intervals)")
    print(f"{'statistic (lower is better)':<52} {'A':>22} {'B':>22} {'B - A':>24}")
    for name, d in diff.items():
        print(f"{name:<52} {shown(report['a'][name]):>22} {shown(report['b'][name]):>22} {shown(d, '+'):>24}")
    print(f"rules calibrated on val: A '{report['a']['rule']}', B '{report['b']['rule']}'\nreport {args.out}")
    return 0


if __name__ == "__main__":
    run_main(main)
