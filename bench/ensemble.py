"""An ensemble of trained bench/quality.py runs: the mean of their age estimates, face by face, on the
validation and the test split. Does averaging models lower the MAE and the ID check's cost to adults? It costs one
training budget per member, so it answers "what would more compute buy", not "what fits the 60-minute budget".

    .venv/bin/python bench/ensemble.py results/bench/quality-seed7-work results/bench/quality-size80-work \
        --out-dir results/bench/ensemble-work
    .venv/bin/python bench/id_check.py --predictions results/bench/ensemble-work --out results/bench/id_check-ensemble.json
    .venv/bin/python bench/compare.py results/bench/quality-seed7-work results/bench/ensemble-work

Writes predictions_{val,test}.csv in --out-dir (the folder format bench/id_check.py and bench/compare.py read) and
prints each member's MAE beside the ensemble's. No training and no images. Age distributions (dex) and spreads
(gaussian) are not combined: the ensemble has the plain age estimate only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from common import run_main  # noqa: E402  (bench/common.py, beside this script)
from id_check import matched_runs, read_predictions  # noqa: E402  (bench/id_check.py)

SPLITS = ("val", "test")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("members", type=Path, nargs="+", help="bench/quality.py work folders (the same split)")
    ap.add_argument("--out-dir", type=Path, default=Path("results/bench/ensemble-work"))
    args = ap.parse_args(argv)
    if len(args.members) < 2:
        ap.error("an ensemble needs at least two members")
    if args.out_dir.resolve() in {m.resolve() for m in args.members}:
        ap.error(f"--out-dir {args.out_dir} is one of the members: it would overwrite that run's predictions")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    print(f"{'split':<6} " + " ".join(f"{'member ' + str(i + 1):>10}" for i in range(len(args.members)))
          + f" {'ensemble':>10}   (MAE, years)")
    for split in SPLITS:
        frames = [read_predictions(folder, split)[0] for folder in args.members]
        faces, members = matched_runs(frames, args.members, split)
        merged = faces.assign(predicted=members.mean(axis=1).round(2))
        merged.to_csv(args.out_dir / f"predictions_{split}.csv", index=False)
        true = merged["age"].to_numpy(float)
        maes = [np.mean(np.abs(members[:, i] - true)) for i in range(members.shape[1])]
        ensemble_mae = np.mean(np.abs(merged["predicted"].to_numpy(float) - true))
        print(f"{split:<6} " + " ".join(f"{m:>10.3f}" for m in maes) + f" {ensemble_mae:>10.3f}")
    (args.out_dir / "members.txt").write_text("".join(f"{m}\n" for m in args.members))
    print(f"wrote {args.out_dir}/predictions_{{val,test}}.csv (members listed in members.txt)")
    return 0


if __name__ == "__main__":
    run_main(main)
