"""Speed benchmark: the compute ceiling, training throughput (model only / the project's pipeline / the seed's
JPEG-per-epoch way), time to validation MAE 8 on real faces, checkout inference latency and prepare speed.
Every figure of one kind is measured in this one run, so the ratios hold on a noisy shared machine.

    .venv/bin/python bench/speed.py                 # the real run (~70 min on 2 cores)
    .venv/bin/python bench/speed.py --set train.batch_size=128 --set train.learning_rate=0.002 \
        --ours-budget-minutes 15 --seed-budget-minutes 150 --ours-precisions default   # ours at batch 128
    .venv/bin/python bench/speed.py --tiny          # CI smoke mode (a minute or two; the figures mean nothing)

Writes results/bench/speed.json (headline ratios at the top level, details beside them).
The UTKFace images are read in place from ../shared (licence: non-commercial research; never copied here).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from common import UTKFACE_IMAGES, add_set_option, images_found, load_params_with, machine_summary, subset_dir  # noqa: E402  (bench/common.py, beside this script)

TARGET_MAE = 8.0
SEED_BATCH_SIZE = 32        # the seed project's generator and Adam's default rate, whatever --set changes for ours
SEED_LEARNING_RATE = 1e-3


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the run measures and how long it may take; --tiny shrinks all of it."""
    profile_size: int            # the project's CPU profile input size (params prepare.image_size)
    full_size: int               # the reference / seed input size
    ceiling_n: int               # matrix side for the GFLOP/s ceiling
    warmup_steps: int
    steps_small: int
    steps_full: int
    rounds: int                  # alternating model-only / pipeline rounds (best of each is kept)
    xla: bool
    n_latency: int
    ours_budget_min: float       # the default profile's cosine schedule length for time-to-accuracy
    seed_budget_min: float       # cap on the seed configuration's time-to-accuracy run
    n_faces: int | None          # None: all UTKFace faces
    backbone: str | None = None  # None: params train.backbone (tiny mode swaps in a small one to stay fast)


FULL = Settings(profile_size=0, full_size=224, ceiling_n=2048, warmup_steps=3, steps_small=15, steps_full=5, rounds=2,
                xla=True, n_latency=100, ours_budget_min=20.0, seed_budget_min=12.0, n_faces=None)
TINY = Settings(profile_size=32, full_size=48, ceiling_n=256, warmup_steps=1, steps_small=2, steps_full=2, rounds=1,
                xla=False, n_latency=4, ours_budget_min=0.1, seed_budget_min=0.05, n_faces=240,
                backbone="tiny_cnn")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, default=UTKFACE_IMAGES, help="UTKFace images folder")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--tiny", action="store_true", help="smoke mode: tiny sizes, a few steps, 240 faces")
    ap.add_argument("--ours-budget-minutes", type=float, help="schedule length of the default profile's run")
    ap.add_argument("--seed-budget-minutes", type=float, help="cap on the seed configuration's run")
    ap.add_argument("--ours-precisions", choices=("both", "default"), default="both",
                    help="time to accuracy of the default profile in fp32 and bf16 (both), or only in the precision "
                         "train.precision resolves to (default: saves a run when the seed's run needs a long cap)")
    add_set_option(ap, "train.batch_size=128")
    ap.add_argument("--out", type=Path, default=Path("results/bench/speed.json"))
    ap.add_argument("--work-dir", type=Path, default=Path("results/bench/speed-work"))
    return ap.parse_args(argv)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- 1. ceiling
def matmul_gflops(n: int, dtype: str, repeats: int = 5) -> float:
    """Throughput of an n x n matrix product through the Keras backend (best of `repeats`)."""
    from keras import ops

    rng = np.random.default_rng(0)
    a = ops.cast(ops.convert_to_tensor(rng.standard_normal((n, n), dtype="float32")), dtype)
    b = ops.cast(ops.convert_to_tensor(rng.standard_normal((n, n), dtype="float32")), dtype)
    ops.convert_to_numpy(ops.cast(ops.matmul(a, b)[0, 0], "float32"))  # warm-up
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        ops.convert_to_numpy(ops.cast(ops.matmul(a, b)[0, 0], "float32"))
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


# ---------------------------------------------------------------- 2. training throughput
def forward_flops(model) -> float:
    """Multiply-adds x 2 of the convolutions and dense layers for one image (what dominates ResNet50)."""
    from keras import layers

    total = 0.0
    stack = [model]
    while stack:
        layer = stack.pop()
        if hasattr(layer, "layers") and layer.layers:
            stack.extend(layer.layers)
            continue
        if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D)):
            _, h, w, c_out = layer.output.shape
            k_h, k_w = layer.kernel_size
            c_in = layer.input.shape[-1]
            per_out = k_h * k_w * (1 if isinstance(layer, layers.DepthwiseConv2D) else c_in // layer.groups)
            total += 2.0 * h * w * c_out * per_out
        elif isinstance(layer, layers.Dense):
            total += 2.0 * layer.input.shape[-1] * layer.units
    return total


def step_timer():
    """A Keras callback recording the wall-clock end of every training step (built here, so importing stays cheap)."""
    import keras

    class _StepTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.ends: list[float] = []

        def on_train_batch_end(self, batch, logs=None) -> None:
            self.ends.append(time.perf_counter())

    return _StepTimer()


def steady_rate(ends: list[float], warmup: int, batch_size: int) -> float:
    """Images per second after the warm-up steps (tracing and the first allocations excluded)."""
    measured = ends[warmup - 1:] if warmup > 0 else ends
    return batch_size * (len(measured) - 1) / (measured[-1] - measured[0])


def same_batch(batch: np.ndarray, ages: np.ndarray):
    """The model-only input: one batch already converted to float32, handed out again every step (no loader work)."""
    import keras

    class SameBatch(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.batch_size = len(batch)
            self.x, self.y = batch.astype("float32"), ages.astype("float32")

        def __len__(self) -> int:
            return 1_000_000

        def __getitem__(self, i: int):
            return self.x, self.y

    return SameBatch()


def fit_rate(model, dataset, warmup: int, steps: int) -> float:
    """Training steps through `model.fit` over a PyDataset, as the train stage runs them."""
    timer = step_timer()
    model.fit(dataset, epochs=1, steps_per_epoch=warmup + steps, callbacks=[timer], verbose=0)
    return steady_rate(timer.ends, warmup, dataset.batch_size)


def jpeg_batches(files: list[Path], ages: np.ndarray, size: int, batch_size: int, seed: int = 0):
    """The seed's input path: every JPEG read and decoded again each epoch (Keras load_img, nearest resize)."""
    import keras

    class JpegBatches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.batch_size = batch_size
            self.order = np.random.default_rng(seed).permutation(len(files))

        def __len__(self) -> int:
            return math.ceil(len(files) / batch_size)

        def __getitem__(self, i: int):
            idx = self.order[i * batch_size:(i + 1) * batch_size]
            x = np.stack([keras.utils.img_to_array(keras.utils.load_img(files[j], target_size=(size, size)))
                          for j in idx])
            return x, ages[idx].astype("float32")

    return JpegBatches()


def seed_config(train_cfg):
    """The seed project's training: fp32, batch 32, a constant learning rate of 1e-3, horizontal flip only, no XLA."""
    from faceage.config import AugmentConfig

    return dataclasses.replace(train_cfg, precision="float32", schedule="constant", warmup_epochs=0,
                               batch_size=SEED_BATCH_SIZE, learning_rate=SEED_LEARNING_RATE,
                               jit_compile=False, time_budget_minutes=0.0,
                               augment=dataclasses.replace(AugmentConfig.off(), flip=True))


def throughput(train_cfg, cached: dict[int, np.ndarray], ages: np.ndarray, files: list[Path], s: Settings,
               gflops_ceiling: dict[str, float]) -> dict:
    """Images/s at the profile size (fp32, bf16, XLA) and the full size (fp32; the seed's way too)."""
    import keras

    from faceage.config import AugmentConfig
    from faceage.model import build_model, compile_model
    from faceage.train import ArrayBatches, set_precision

    bs = train_cfg.batch_size
    n_needed = bs * (s.warmup_steps + max(s.steps_small, s.steps_full))
    results: dict[str, dict] = {}
    cases = [(s.profile_size, "float32", False, s.steps_small), (s.profile_size, "mixed_bfloat16", False, s.steps_small)]
    if s.xla:
        # Keras cannot XLA-compile the rotation/zoom/shift layers (it warns and falls back to no XLA), so XLA is
        # compared on the model without them, against the same model without XLA.
        cases += [(s.profile_size, "float32", "noaug", s.steps_small), (s.profile_size, "float32", "xla", s.steps_small)]
    cases.append((s.full_size, "float32", False, s.steps_full))
    no_augment = AugmentConfig.off()
    for size, precision, variant, steps in cases:
        xla = variant == "xla"
        name = f"{size}px_{'bf16' if precision != 'float32' else 'fp32'}{'_' + variant if variant else ''}"
        cfg = dataclasses.replace(train_cfg, precision=precision, jit_compile=xla,
                                  augment=no_augment if variant else train_cfg.augment)
        keras.backend.clear_session()
        set_precision(precision)
        keras.utils.set_random_seed(cfg.seed)
        model = build_model(cfg, size, float(np.mean(ages)))
        compile_model(model, cfg, steps_per_epoch=100)
        if xla and not model.jit_compile:
            raise RuntimeError("Keras fell back to jit_compile=False: the XLA figure would be a no-XLA one")
        images = cached[size][:n_needed]
        # Alternate the two inputs and keep the best round of each: the machine's noise (+-15%) hits both alike.
        row: dict[str, float] = {"model_only": 0.0} if variant else {"model_only": 0.0, "pipeline": 0.0}
        for _ in range(s.rounds):
            rate = fit_rate(model, same_batch(images[:bs], ages[:bs]), s.warmup_steps, steps)
            row["model_only"] = max(row["model_only"], rate)
            if not variant:
                rate = fit_rate(model, ArrayBatches(images, ages[:len(images)], bs, shuffle=True), s.warmup_steps, steps)
                row["pipeline"] = max(row["pipeline"], rate)
        log(f"{name}: " + ", ".join(f"{k} {v:.1f} img/s" for k, v in row.items()))
        if size == s.full_size:
            row["seed_jpeg_per_epoch"] = fit_rate(model, jpeg_batches(files, ages, size, SEED_BATCH_SIZE),
                                                  s.warmup_steps, steps)
            log(f"{name}: seed's JPEG-per-epoch way {row['seed_jpeg_per_epoch']:.1f} img/s")
        train_gflop = 3 * forward_flops(model) / 1e9  # forward + backward ~ 3x forward
        ceiling = gflops_ceiling["bf16" if precision != "float32" else "fp32"]
        row["mfu_vs_matmul_ceiling"] = round(row["model_only"] * train_gflop / ceiling, 3)
        row["train_gflop_per_image"] = round(train_gflop, 3)
        results[name] = {k: round(v, 2) for k, v in row.items()}
        del model
    set_precision("float32")
    return results


# ---------------------------------------------------------------- 3. time to accuracy
def stop_at_target(target: float, cap_s: float, stop_when_reached: bool):
    """Records wall time per epoch and the first val_mae <= target (stopping there if asked); stops when the
    cap is passed (checked after every batch)."""
    import keras

    class _Stop(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.start, self.epochs, self.reached_s, self.reached_epoch, self.capped = 0.0, [], None, None, False

        def on_train_begin(self, logs=None) -> None:
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None) -> None:
            if time.perf_counter() - self.start > cap_s:
                self.capped, self.model.stop_training = True, True

        def on_epoch_end(self, epoch, logs=None) -> None:
            elapsed = time.perf_counter() - self.start
            val_mae = (logs or {}).get("val_mae")
            self.epochs.append({"epoch": epoch + 1, "seconds": round(elapsed, 1),
                                "val_mae": None if val_mae is None else round(float(val_mae), 3)})
            if val_mae is not None and val_mae <= target and self.reached_s is None:
                self.reached_s, self.reached_epoch = elapsed, epoch + 1
                self.model.stop_training = self.model.stop_training or stop_when_reached

    return _Stop()


def time_to_accuracy(name: str, cfg, train_data, val_data, image_size: int, mean_age: float, cap_min: float,
                     setup_s: float, stop_when_reached: bool) -> dict:
    """Train until val MAE <= TARGET_MAE (or to the end of the schedule) or the cap; the clock includes
    `setup_s` (decoding/caching the data)."""
    import keras

    from faceage.model import build_model, compile_model
    from faceage.train import set_precision

    keras.backend.clear_session()
    set_precision(cfg.precision)
    keras.utils.set_random_seed(cfg.seed)
    model = build_model(cfg, image_size, mean_age)
    compile_model(model, cfg, steps_per_epoch=len(train_data))
    stopper = stop_at_target(TARGET_MAE, cap_min * 60, stop_when_reached)
    log(f"{name}: training until val MAE <= {TARGET_MAE} (cap {cap_min:g} min)")
    model.fit(train_data, validation_data=val_data, epochs=10_000 if cfg.time_budget_minutes > 0 else cfg.epochs,
              callbacks=[*time_budget(cfg), stopper], verbose=2)
    trained_s = time.perf_counter() - stopper.start
    reached = stopper.reached_s is not None
    last_val = stopper.epochs[-1]["val_mae"] if stopper.epochs else None
    if stopper.capped and not reached:
        # Stopped inside an epoch: score the model as it is now, so the cap reports where the run got to.
        last_val = round(float(model.evaluate(val_data, verbose=0, return_dict=True)["mae"]), 3)
    images_seen = int(keras.ops.convert_to_numpy(model.optimizer.iterations)) * cfg.batch_size
    total = setup_s + (stopper.reached_s if reached else trained_s)
    vals = [e["val_mae"] for e in stopper.epochs if e["val_mae"] is not None]
    log(f"{name}: {'reached' if reached else 'NOT reached'} val MAE {TARGET_MAE} in {total / 60:.1f} min (last val MAE {last_val})")
    set_precision("float32")
    return {"reached": reached, "minutes": round(total / 60, 2), "setup_seconds": round(setup_s, 1),
            "cap_minutes": cap_min, "last_val_mae": last_val, "best_val_mae": min(vals) if vals else None,
            "train_minutes": round(trained_s / 60, 2), "epochs_to_target": stopper.reached_epoch, "images_seen": images_seen, "epochs": stopper.epochs,
            "image_size": image_size, "precision": cfg.precision, "schedule": cfg.schedule,
            "batch_size": cfg.batch_size, "learning_rate": cfg.learning_rate}


def time_budget(cfg) -> list:
    from faceage.train import TimeBudget

    return [TimeBudget(cfg, cfg.time_budget_minutes * 60)] if cfg.time_budget_minutes > 0 else []


# ---------------------------------------------------------------- 4. inference
def percentiles(fn: Callable[[int], object], n: int, warmup: int = 2) -> dict[str, float]:
    for i in range(warmup):
        fn(i)
    times = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - start) * 1000)
    return {"p50_ms": round(float(np.percentile(times, 50)), 2), "p95_ms": round(float(np.percentile(times, 95)), 2)}


def inference(train_cfg, predict_cfg, size: int, photos: list[bytes], s: Settings) -> dict:
    """Latency of one photo end to end and of the model alone, at the serving size, the way predict/serve run it."""
    import keras

    from faceage.inference import predict_ages
    from faceage.model import build_model
    from faceage.predict import faces_of_photo
    from faceage.train import inference_copy, set_precision

    keras.backend.clear_session()
    set_precision(train_cfg.precision)
    model = inference_copy(build_model(train_cfg, size, 30.0))  # the saved model's form; weights do not change speed
    set_precision("float32")
    photos = [p for p in photos if has_face(p, size, predict_cfg)]
    faces = [faces_of_photo(p, size, predict_cfg, all_faces=False)[0][0].pixels for p in photos]
    one = np.stack(faces[:1])
    batch = np.stack([faces[i % len(faces)] for i in range(32)])
    n = min(s.n_latency, len(photos))
    report = {
        "serving_size": size, "precision": train_cfg.precision, "n_photos": n,
        "end_to_end": percentiles(lambda i: predict_ages(model, np.stack(
            [f.pixels for f in faces_of_photo(photos[i % len(photos)], size, predict_cfg, all_faces=False)[0]])), n),
        "model_only": percentiles(lambda i: predict_ages(model, one), n),
        "model_predict_call": percentiles(lambda i: model.predict(one.astype("float32"), verbose=0), max(3, n // 4)),
        "eager_call": percentiles(lambda i: model(one.astype("float32"), training=False), max(3, n // 4)),
    }
    predict_ages(model, batch, batch_size=32)  # the first call of a new batch shape traces the model again
    start = time.perf_counter()
    reps = 3
    for _ in range(reps):
        predict_ages(model, batch, batch_size=32)
    report["batch32_img_per_s"] = round(32 * reps / (time.perf_counter() - start), 1)
    log(f"inference at {size}px: end to end {report['end_to_end']}, model {report['model_only']}, "
        f"eager {report['eager_call']}, batch 32 {report['batch32_img_per_s']} img/s")
    return report


def has_face(photo: bytes, size: int, predict_cfg) -> bool:
    from faceage.data.images import ImageProblem
    from faceage.predict import faces_of_photo

    try:
        return bool(faces_of_photo(photo, size, predict_cfg, all_faces=False)[0])
    except ImageProblem:
        return False


# ---------------------------------------------------------------- the run
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not images_found(args.images):
        return 2
    import keras

    from faceage.config import PrepareConfig
    from faceage.data.prepared import load_prepared
    from faceage.prepare import decode_all, run_prepare
    from faceage.train import ArrayBatches

    params = load_params_with(args.params, args.set)
    s = TINY if args.tiny else dataclasses.replace(FULL, profile_size=params.prepare.image_size)
    s = dataclasses.replace(s, ours_budget_min=args.ours_budget_minutes or s.ours_budget_min,
                            seed_budget_min=args.seed_budget_minutes or s.seed_budget_min)
    data_dir = subset_dir(args.images, s.n_faces, seed=0) if s.n_faces else args.images
    log(f"backend {keras.backend.backend()}, keras {keras.__version__}, {os.cpu_count()} cores; data {data_dir}")

    # 5. prepare: decode + validate + resize + cache (+ split, manifest, EDA figures), the same split as bench/quality.py
    prep_cfg = PrepareConfig(data_dir=str(data_dir), layout="utkface", image_size=s.profile_size,
                             val_fraction=0.15, test_fraction=0.15, max_bad_fraction=0.01, seed=42)
    start = time.perf_counter()
    prep_report = run_prepare(prep_cfg, args.work_dir / "prepare", progress=False)
    prepare_s = time.perf_counter() - start
    prepare = {"images": prep_report["n_rows"], "seconds": round(prepare_s, 2),
               "img_per_s": round(prep_report["n_rows"] / prepare_s, 1), "image_size": s.profile_size,
               "includes": "layout scan, decode, validation, resize, cache write, split, EDA figures"}
    log(f"prepare: {prepare['img_per_s']} img/s ({prepare['images']} images in {prepare['seconds']} s)")

    data = load_prepared(args.work_dir / "prepare")
    train, val = data.split("train"), data.split("val")
    root = Path(prep_cfg.data_dir)
    train_files = [root / f for f in train.rows["file"]]
    val_files = [root / f for f in val.rows["file"]]

    # 1. ceiling
    ceiling = {"fp32": round(matmul_gflops(s.ceiling_n, "float32"), 1), "bf16": round(matmul_gflops(s.ceiling_n, "bfloat16"), 1),
               "matrix_side": s.ceiling_n}
    log(f"ceiling: fp32 {ceiling['fp32']} GFLOP/s, bf16 {ceiling['bf16']} GFLOP/s")

    # 2. throughput, on the first training faces cached at both sizes
    n_cache = params.train.batch_size * (s.warmup_steps + max(s.steps_small, s.steps_full))
    cached = {s.profile_size: np.asarray(train.images[:n_cache])}
    start = time.perf_counter()
    cached[s.full_size] = decode_all(root, list(train.rows["file"][:n_cache]), s.full_size, progress=False).images
    log(f"cached {n_cache} faces at {s.full_size}px in {time.perf_counter() - start:.1f} s")
    from faceage.hardware import BF16_CPU_FLAGS, cpu_flags, resolve_precision

    train_cfg = dataclasses.replace(params.train, backbone=s.backbone or params.train.backbone,
                                    precision=resolve_precision(params.train.precision))
    speed = throughput(train_cfg, cached, train.ages[:n_cache], train_files[:n_cache], s, ceiling)
    prof, full = f"{s.profile_size}px", f"{s.full_size}px"
    default_tag = "bf16" if train_cfg.precision != "float32" else "fp32"

    # 4. inference at the serving size
    photos = [p.read_bytes() for p in sorted(args.images.iterdir())[::max(1, 7830 // max(s.n_latency, 1))][:s.n_latency]]
    infer = inference(train_cfg, params.predict, s.profile_size, photos, s)

    # 3. time to accuracy: the default profile (cached arrays, a cosine schedule of ours_budget_min) in fp32 and
    #    bf16 on the same seeds, each run to the end of its schedule; then the seed's configuration, capped.
    bs = train_cfg.batch_size
    ours_runs = {}
    # --tiny runs the default precision only (the same code path; bench/precision.py --tiny trains both)
    only_default = args.tiny or args.ours_precisions == "default"
    for precision in (train_cfg.precision,) if only_default else ("float32", "mixed_bfloat16"):
        cfg = dataclasses.replace(train_cfg, precision=precision, time_budget_minutes=s.ours_budget_min, epochs=10_000)
        ours_runs["bf16" if precision != "float32" else "fp32"] = time_to_accuracy(
            f"ours ({s.profile_size}px, {precision})", cfg,
            ArrayBatches(train.images, train.ages, bs, shuffle=True, seed=train_cfg.seed),
            ArrayBatches(val.images, val.ages, bs, shuffle=False), s.profile_size, float(np.mean(train.ages)),
            cap_min=s.ours_budget_min + 5, setup_s=prepare_s, stop_when_reached=False)
    ours = ours_runs[default_tag]
    seed_cfg = dataclasses.replace(seed_config(train_cfg), epochs=10_000)
    seed = time_to_accuracy(
        f"seed ({s.full_size}px, fp32, JPEG per epoch)", seed_cfg,
        jpeg_batches(train_files, train.ages, s.full_size, SEED_BATCH_SIZE, seed=train_cfg.seed),
        jpeg_batches(val_files, val.ages, s.full_size, SEED_BATCH_SIZE), s.full_size, float(np.mean(train.ages)),
        cap_min=s.seed_budget_min, setup_s=0.0, stop_when_reached=True)
    seed_epoch_min = len(train.ages) / speed[f"{full}_fp32"]["seed_jpeg_per_epoch"] / 60
    if ours["reached"]:
        ratio = seed["minutes"] / ours["minutes"]
        projected = ours["epochs_to_target"] * seed_epoch_min / ours["minutes"]
    else:
        ratio = projected = None
    fp32_best, bf16_best = (ours_runs.get(tag, {}).get("best_val_mae") for tag in ("fp32", "bf16"))

    pipe, model_only = speed[f"{prof}_{default_tag}"]["pipeline"], speed[f"{prof}_{default_tag}"]["model_only"]
    report = {
        "pipeline_vs_model_only": round(pipe / model_only, 3),
        "bf16_speedup": round(speed[f"{prof}_bf16"]["pipeline"] / speed[f"{prof}_fp32"]["pipeline"], 3),
        "time_to_mae8_speedup": None if ratio is None else round(ratio, 2),
        "time_to_mae8_speedup_is_lower_bound": bool(ratio is not None and not seed["reached"]),
        "time_to_mae8_speedup_projected": None if projected is None else round(projected, 1),
        "bf16_best_val_mae_delta": None if None in (fp32_best, bf16_best) else round(bf16_best - fp32_best, 3),
        "infer_p50_ms": infer["end_to_end"]["p50_ms"],
        "prepare_img_per_s": prepare["img_per_s"],
        "pipeline_vs_seed_way": round(pipe / speed[f"{full}_fp32"]["seed_jpeg_per_epoch"], 2),
        "xla_speedup": (round(speed[f"{prof}_fp32_xla"]["model_only"] / speed[f"{prof}_fp32_noaug"]["model_only"], 3)
                        if f"{prof}_fp32_xla" in speed else None),
        "ceiling_gflops": ceiling,
        "training_img_per_s": speed,
        "time_to_mae8": {"target_val_mae": TARGET_MAE, "ours": ours_runs, "ours_default": default_tag, "seed": seed,
                         "seed_epoch_minutes_at_measured_rate": round(seed_epoch_min, 1),
                         "n_train": int(len(train.ages)), "n_val": int(len(val.ages))},
        "inference": infer,
        "prepare": prepare,
        "default_precision": train_cfg.precision,
        "backbone": train_cfg.backbone,
        "tiny": args.tiny,
        "overrides": args.set,
        "backend": keras.backend.backend(),
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": machine_summary(),
        "cpu_bf16_instructions": sorted(cpu_flags() & BF16_CPU_FLAGS),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    headline = {k: report[k] for k in ("pipeline_vs_model_only", "bf16_speedup", "time_to_mae8_speedup",
                                       "time_to_mae8_speedup_projected", "bf16_best_val_mae_delta", "infer_p50_ms", "prepare_img_per_s",
                                       "pipeline_vs_seed_way", "xla_speedup")}
    print(json.dumps(headline, indent=2))
    log(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
