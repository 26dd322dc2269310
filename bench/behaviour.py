"""Behaviour of a trained model on real faces: does the age stay put when the photo changes in ways that do not
change the person? Mirror image, a little brighter or darker, shifted by a few pixels, re-compressed as a JPEG.
For each change: how far the age moves (mean, 95th percentile, mean signed) next to the model's own test MAE,
and the share of ID-check decisions that flip, under the store rule and the calibrated rule. The model is
called without flip test-time augmentation: with it, the mirror image gives the same age by construction.

    .venv/bin/python bench/behaviour.py                                   # the quality benchmark's saved model
    .venv/bin/python bench/behaviour.py --work-dir results/bench/quality-dex-work --out results/bench/behaviour-dex.json
    .venv/bin/python bench/behaviour.py --tiny                            # CI smoke mode: untrained model, 40 faces

Reads <work-dir>/model.keras and the prepared test split (<work-dir>/prepare) that bench/quality.py saved;
writes results/bench/behaviour.json. A figure, not a test: no threshold is asserted on a trained model here.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

SHIFT_PX = 2
BRIGHTNESS = 0.10
JPEG_QUALITY = 50


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work-dir", type=Path, default=Path("results/bench/quality-work"),
                    help="bench/quality.py's work folder (model.keras, prepare/)")
    ap.add_argument("--policy", type=Path, default=None,
                    help="a policy.json to check decision flips against (default: the age rule in <out>'s id_check)")
    ap.add_argument("--threshold", type=float, default=None, help="calibrated age threshold T to check flips at")
    ap.add_argument("--tiny", action="store_true", help="smoke mode: an untrained 32 px model on 40 real faces")
    ap.add_argument("--out", type=Path, default=Path("results/bench/behaviour.json"))
    return ap.parse_args(argv)


def mirrored(x: np.ndarray) -> np.ndarray:
    return x[:, :, ::-1]


def brightened(x: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(x.astype("float32") * factor, 0, 255).astype("uint8")


def shifted(x: np.ndarray, px: int = SHIFT_PX) -> np.ndarray:
    """Moved right and down by px pixels, the edge row/column repeated (no black border)."""
    from faceage.inference import shifted as move

    return move(x, px, px)


def recompressed(x: np.ndarray, quality: int = JPEG_QUALITY) -> np.ndarray:
    from PIL import Image

    out = np.empty_like(x)
    for i, face in enumerate(x):
        buf = io.BytesIO()
        Image.fromarray(face).save(buf, format="JPEG", quality=quality)
        out[i] = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return out


CHANGES = {
    "mirror": mirrored,
    f"brighter_{int(BRIGHTNESS * 100)}pct": lambda x: brightened(x, 1 + BRIGHTNESS),
    f"darker_{int(BRIGHTNESS * 100)}pct": lambda x: brightened(x, 1 - BRIGHTNESS),
    f"shift_{SHIFT_PX}px": shifted,
    f"jpeg_q{JPEG_QUALITY}": recompressed,
}


def load_faces(args: argparse.Namespace):
    """(model, test images, test ages)."""
    from faceage.data.prepared import load_prepared
    from faceage.inference import load_model

    if args.tiny:
        from faceage.config import PrepareConfig
        from faceage.prepare import run_prepare

        from common import UTKFACE_IMAGES, subset_dir, untrained_tiny_model  # noqa: E402  (bench/common.py)

        prep = args.work_dir / "behaviour-tiny-prepare"
        run_prepare(PrepareConfig(data_dir=str(subset_dir(UTKFACE_IMAGES, 200, seed=1)), layout="utkface",
                                  image_size=32, seed=42), prep, progress=False)
        test = load_prepared(prep).split("test")
        return untrained_tiny_model(test.ages), test.images, test.ages
    test = load_prepared(args.work_dir / "prepare").split("test")
    return load_model(args.work_dir / "model.keras"), test.images, test.ages


def main(argv: list[str] | None = None) -> int:
    from faceage.inference import predict_ages

    args = parse_args(argv)
    model, images, ages = load_faces(args)
    threshold = args.threshold
    if threshold is None and args.policy is not None:
        threshold = float(json.loads(args.policy.read_text())["threshold"])
    rules = {"store_T25": 25.0, **({f"calibrated_T{threshold:g}": threshold} if threshold else {})}
    start = time.perf_counter()
    base = predict_ages(model, images)
    report = {"n_faces": int(len(ages)), "mae": float(np.mean(np.abs(base - ages))),
              "pred_spread_sd": float(np.std(base)), "changes": {}}
    for name, change in CHANGES.items():
        moved = predict_ages(model, change(images)) - base
        entry = {"mean_abs_change": float(np.mean(np.abs(moved))),
                 "p95_abs_change": float(np.percentile(np.abs(moved), 95)),
                 "mean_signed_change": float(np.mean(moved)),
                 "mean_abs_change_vs_mae": float(np.mean(np.abs(moved)) / max(report["mae"], 1e-9))}
        for rule, t in rules.items():
            entry[f"decisions_flipped_{rule}"] = float(np.mean((base < t) != (base + moved < t)))
        report["changes"][name] = entry
    report.update({"seconds": round(time.perf_counter() - start, 1), "tiny": args.tiny,
                   "work_dir": None if args.tiny else str(args.work_dir),
                   "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
                   "date": time.strftime("%Y-%m-%d %H:%M")})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{report['n_faces']} test faces, MAE {report['mae']:.2f}; age change when the photo changes:")
    for name, entry in report["changes"].items():
        flips = ", ".join(f"{k.removeprefix('decisions_flipped_')} {v:.1%}" for k, v in entry.items()
                          if k.startswith("decisions_flipped_"))
        print(f"  {name:>14}: mean |change| {entry['mean_abs_change']:.2f} y ({entry['mean_abs_change_vs_mae']:.2f} x MAE), "
              f"p95 {entry['p95_abs_change']:.2f}, signed {entry['mean_signed_change']:+.2f}; ID decisions flipped: {flips}")
    print(f"report {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
