"""Test-time augmentation on a trained model: test MAE and the calibrated ID check for more and more views
(none; the mirror image; the face and its mirror each moved by +-1 or +-2 pixels), from one saved model, so the
views are the only difference. The ID-check rule is calibrated on validation for each, as evaluate does.

    .venv/bin/python bench/tta.py                    # the quality benchmark's saved model (results/bench/quality-work)
    .venv/bin/python bench/tta.py --tiny             # CI smoke mode: an untrained 32 px model on 200 real faces

Writes results/bench/tta.json. Each view is one more image through the model: the cost grows with the view count.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

CONFIGS = {"none": (False, 0), "flip": (True, 0), "flip+shift1": (True, 1), "flip+shift2": (True, 2)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work-dir", type=Path, default=Path("results/bench/quality-work"),
                    help="bench/quality.py's work folder (model.keras, prepare/)")
    ap.add_argument("--tiny", action="store_true", help="smoke mode: an untrained 32 px model on 200 real faces")
    ap.add_argument("--out", type=Path, default=Path("results/bench/tta.json"))
    return ap.parse_args(argv)


def load(args: argparse.Namespace):
    """(model, val split, test split)."""
    from faceage.data.prepared import load_prepared
    from faceage.inference import load_model

    if not args.tiny:
        data = load_prepared(args.work_dir / "prepare")
        return load_model(args.work_dir / "model.keras"), data.split("val"), data.split("test")
    from faceage.config import PrepareConfig
    from faceage.prepare import run_prepare

    from common import UTKFACE_IMAGES, subset_dir, untrained_tiny_model  # noqa: E402  (bench/common.py)

    prep = args.work_dir / "tta-tiny-prepare"
    run_prepare(PrepareConfig(data_dir=str(subset_dir(UTKFACE_IMAGES, 200, seed=2)), layout="utkface", image_size=32,
                              val_fraction=0.3, test_fraction=0.3, seed=42), prep, progress=False)
    data = load_prepared(prep)
    return untrained_tiny_model(data.split("train").ages), data.split("val"), data.split("test")


def main(argv: list[str] | None = None) -> int:
    from faceage.config import load_params
    from faceage.inference import estimate, tta_views
    from faceage.metrics import id_rates
    from faceage.policy import calibrate

    args = parse_args(argv)
    params = load_params()
    ev, target = params.evaluate, params.policy.max_minors_not_asked
    model, val, test = load(args)
    report: dict = {"n_val": int(len(val.ages)), "n_test": int(len(test.ages)), "configs": {}}
    for name, (flip, px) in CONFIGS.items():
        start = time.perf_counter()
        val_est = estimate(model, val.images, ev.batch_size, flip, px)
        test_est = estimate(model, test.images, ev.batch_size, flip, px)
        seconds = time.perf_counter() - start
        policy = calibrate(val.ages, val_est, ev.legal_age, target, ev.youngest_minor)
        report["configs"][name] = {
            "views": len(tta_views(flip, px)),
            "test_mae": float(np.mean(np.abs(test_est.ages - test.ages))),
            "val_mae": float(np.mean(np.abs(val_est.ages - val.ages))),
            "calibrated_threshold": policy.threshold, "met_on_val": policy.met_on_val,
            "test_id_check": id_rates(test.ages, policy.ask(test_est), ev.legal_age, ev.youngest_minor),
            "images_per_s": float((len(val.ages) + len(test.ages)) / seconds),
        }
    base = report["configs"]["flip"]
    for entry in report["configs"].values():
        entry["test_mae_vs_flip"] = entry["test_mae"] / base["test_mae"]
    report.update({"tiny": args.tiny, "work_dir": None if args.tiny else str(args.work_dir),
                   "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
                   "date": time.strftime("%Y-%m-%d %H:%M")})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for name, e in report["configs"].items():
        c = e["test_id_check"]
        print(f"{name:>12} ({e['views']:>2} views): test MAE {e['test_mae']:.2f} ({e['test_mae_vs_flip']:.3f} x flip), "
              f"rule T={e['calibrated_threshold']:g}: teens not asked {c['minors_not_asked']:.1%}, adults 25+ asked "
              f"{c['adults_25plus_asked']:.1%}")
    print(f"report {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
