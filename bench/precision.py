"""Precision benchmark: does bf16 pay on THIS machine, and does `train.precision: auto` pick the faster one?

Trains the default model (params.yaml: backbone, input size, augmentation) on real UTKFace faces through the
project's loader (ArrayBatches), alternating float32 and mixed_bfloat16 rounds in one run and keeping the best
round of each, so the ratio holds on a noisy shared machine. Also measures the matrix-product ceiling of both
dtypes and reads the CPU's bf16 instruction flags.

    .venv/bin/python bench/precision.py           # the real run (a few minutes on 2 cores)
    .venv/bin/python bench/precision.py --tiny    # CI smoke mode (tiny_cnn, 32 px; seconds; the figures mean nothing)

Writes results/bench/precision.json. The UTKFace images are read in place from ../shared (never copied here).
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

from common import UTKFACE_IMAGES, add_set_option, images_found, load_params_with, machine_summary  # noqa: E402  (bench/common.py, beside this script)
from speed import fit_rate, log, matmul_gflops  # noqa: E402

POLICIES = ("float32", "mixed_bfloat16")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, default=UTKFACE_IMAGES, help="UTKFace images folder")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--tiny", action="store_true", help="smoke mode: 32 px, a small backbone, one round of two steps")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per precision (best kept)")
    ap.add_argument("--steps", type=int, default=6, help="measured training steps per round")
    ap.add_argument("--out", type=Path, default=Path("results/bench/precision.json"))
    ap.add_argument("--work-dir", type=Path, help="unused; accepted like the other benchmarks")
    add_set_option(ap, "train.batch_size=128")
    return ap.parse_args(argv)


def load_faces(images: Path, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n UTKFace faces (sorted names) decoded at `size`, with their ages (the number before the first _)."""
    from faceage.prepare import decode_all

    files = sorted(p.name for p in images.iterdir() if p.suffix.lower() == ".jpg")[:n]
    decoded = decode_all(images, files, size, progress=False)
    if decoded.problems:
        raise SystemExit(f"error: {len(decoded.problems)} faces could not be decoded, first: {decoded.problems[0]}")
    ages = np.array([float(name.split("_", 1)[0]) for name in files], dtype="float32")
    return decoded.images, ages


def measure(train_cfg, faces: np.ndarray, ages: np.ndarray, rounds: int, warmup: int, steps: int) -> dict[str, float]:
    """Training images/s of each precision: one model per precision, rounds alternating between them."""
    import keras

    from faceage.model import build_model, compile_model
    from faceage.train import ArrayBatches, set_precision

    models = {}
    for policy in POLICIES:
        set_precision(policy)
        keras.utils.set_random_seed(train_cfg.seed)
        cfg = dataclasses.replace(train_cfg, precision=policy)
        models[policy] = build_model(cfg, faces.shape[1], float(np.mean(ages)))
        compile_model(models[policy], cfg, steps_per_epoch=100)
    best = dict.fromkeys(POLICIES, 0.0)
    for r in range(rounds):
        for policy in POLICIES:
            rate = fit_rate(models[policy], ArrayBatches(faces, ages, train_cfg.batch_size, shuffle=True, seed=r),
                            warmup, steps)
            best[policy] = max(best[policy], rate)
            log(f"round {r + 1}/{rounds} {policy}: {rate:.2f} img/s")
    set_precision("float32")
    return {policy: round(rate, 2) for policy, rate in best.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not images_found(args.images):
        return 2
    import keras

    from faceage.hardware import BF16_CPU_FLAGS, cpu_flags, has_accelerator, resolve_precision

    params = load_params_with(args.params, args.set)
    train_cfg = params.train
    size, rounds, steps, warmup = params.prepare.image_size, args.rounds, args.steps, 2
    if args.tiny:
        train_cfg = dataclasses.replace(train_cfg, backbone="tiny_cnn", batch_size=min(train_cfg.batch_size, 8))
        size, rounds, steps, warmup = 32, 1, 2, 1
    faces, ages = load_faces(args.images, train_cfg.batch_size * (warmup + steps), size)
    flags = sorted(cpu_flags() & BF16_CPU_FLAGS)
    log(f"backend {keras.backend.backend()}, {os.cpu_count()} cores, bf16 CPU instructions: {flags or 'none'}")

    ceiling_n = 256 if args.tiny else 2048
    ceiling = {"fp32": round(matmul_gflops(ceiling_n, "float32"), 1), "bf16": round(matmul_gflops(ceiling_n, "bfloat16"), 1),
               "matrix_side": ceiling_n}
    log(f"ceiling: fp32 {ceiling['fp32']} GFLOP/s, bf16 {ceiling['bf16']} GFLOP/s")
    start = time.perf_counter()
    rates = measure(train_cfg, faces, ages, rounds, warmup, steps)
    speedup = rates["mixed_bfloat16"] / rates["float32"]
    auto = resolve_precision("auto")
    faster = max(POLICIES, key=lambda p: rates[p])
    report = {
        "bf16_vs_fp32_training": round(speedup, 3),
        "auto_resolves_to": auto,
        "auto_picks_the_faster": auto == faster,
        "training_img_per_s": rates,
        "ceiling_gflops": ceiling,
        "cpu_bf16_instructions": flags,
        "accelerator": has_accelerator(),
        "model": {"backbone": train_cfg.backbone, "image_size": size, "batch_size": train_cfg.batch_size,
                  "rounds": rounds, "steps_per_round": steps, "warmup_steps": warmup},
        "seconds": round(time.perf_counter() - start, 1),
        "machine": machine_summary(),
        "backend": keras.backend.backend(),
        "tiny": args.tiny,
        "overrides": args.set,
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    log(f"bf16 / fp32 training throughput: {speedup:.2f}x ({rates}); auto -> {auto} "
        f"({'the faster' if auto == faster else 'NOT the faster'}); report {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
