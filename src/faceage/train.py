"""Stage `train`: fit the age model on the prepared train split, validating on the val split.

`fit` is the one training function of the project: the train stage and Optuna tuning both call it.
Reads params section `train`; writes results/train/ (best-epoch model, per-epoch history, metrics) and
one MLflow run (params, per-epoch loss/MAE, the model).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from faceage.config import Params, TrainConfig, to_flat_dict
from faceage.data.prepared import PreparedData, Split, load_prepared
from faceage.errors import DataError
from faceage.hardware import resolve_precision
from faceage.model import build_model, compile_model

OUT_DIR = Path("results/train")
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.csv"
CHECKPOINT_FILE = "best.weights.h5"


FOCUS_AGES = (10, 30)   # train.weight_ages_10_30 weighs the faces in this range (inclusive): around the legal age


def age_weights(ages: np.ndarray, weight: float) -> np.ndarray | None:
    """Per-face loss weights: `weight` for ages 10-30, 1 elsewhere; None when weight is 1 (no weighting)."""
    if weight == 1.0:
        return None
    focus = (ages >= FOCUS_AGES[0]) & (ages <= FOCUS_AGES[1])
    return np.where(focus, weight, 1.0).astype("float32")


class ArrayBatches(keras.utils.PyDataset):
    """Batches of cached uint8 faces as float32 (0-255) with their ages (and loss weights, when given);
    reshuffled every epoch (seeded).

    Training batches may also change the ages, which is why these two augmentations live here and not in the
    model: `label_jitter` adds Gaussian noise (years) to each age, `mixup` (Zhang et al. 2018) blends each face
    with another of the batch, with weight lam ~ Beta(mixup, mixup), and blends their ages (and loss weights) alike.
    Each batch draws these from its own generator seeded by (seed, epoch, batch), so a run replays exactly.
    """

    def __init__(self, images: np.ndarray, ages: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0,
                 weights: np.ndarray | None = None, mixup: float = 0.0, label_jitter: float = 0.0):
        super().__init__()
        self.images, self.ages, self.batch_size, self.shuffle = images, ages.astype("float32"), batch_size, shuffle
        self.weights, self.mixup, self.label_jitter, self.seed = weights, mixup, label_jitter, seed
        self.epoch = 0
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(len(ages)) if shuffle else np.arange(len(ages))

    def __len__(self) -> int:
        return math.ceil(len(self.ages) / self.batch_size)

    def __getitem__(self, i: int) -> tuple[np.ndarray, ...]:
        idx = np.sort(self._order[i * self.batch_size:(i + 1) * self.batch_size])
        images, ages = self.images[idx].astype("float32"), self.ages[idx]
        weights = None if self.weights is None else self.weights[idx]
        if self.mixup > 0 or self.label_jitter > 0:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            if self.label_jitter > 0:
                ages = np.maximum(ages + rng.normal(0.0, self.label_jitter, len(ages)), 0.0).astype("float32")
            if self.mixup > 0:
                images, ages, weights = mix_up(images, ages, weights, rng.beta(self.mixup, self.mixup, len(ages)),
                                               rng.permutation(len(ages)))
        return (images, ages) if weights is None else (images, ages, weights)

    def on_epoch_end(self) -> None:
        self.epoch += 1
        if self.shuffle:
            self._order = self._rng.permutation(len(self.ages))


def mix_up(images: np.ndarray, ages: np.ndarray, weights: np.ndarray | None, lam: np.ndarray,
           partner: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Blend face k with face partner[k] as lam[k] x own + (1 - lam[k]) x partner's, ages and weights alike."""
    lam = lam.astype("float32")
    mixed_images = lam[:, None, None, None] * images + (1 - lam[:, None, None, None]) * images[partner]
    mixed_ages = lam * ages + (1 - lam) * ages[partner]
    mixed_weights = None if weights is None else lam * weights + (1 - lam) * weights[partner]
    return mixed_images, mixed_ages, mixed_weights


@dataclass
class FitResult:
    model: keras.Model            # weights of the best epoch (lowest val_mae)
    history: pd.DataFrame         # one row per epoch: epoch, loss, mae, val_loss, val_mae, lr
    best_epoch: int
    best_val_mae: float
    seconds: float
    images_per_s: float           # training images per wall-clock second, compile and validation included
    precision: str                # the dtype policy trained with (train.precision `auto` resolved)


def set_precision(precision: str) -> str:
    """Set the global Keras dtype policy (`auto` resolved for this machine) and return the one set."""
    policy = resolve_precision(precision)
    keras.mixed_precision.set_global_policy(policy)
    return policy


def fit(cfg: TrainConfig, train: Split, val: Split, callbacks: list[keras.callbacks.Callback] | None = None,
        checkpoint: Path | None = None, verbose: str | int = "auto") -> FitResult:
    """Build, compile and train the model; return it with the weights of its best validation epoch."""
    if len(train.ages) == 0 or len(val.ages) == 0:
        raise DataError("the train and val splits must both hold images; use more data or other prepare fractions")
    keras.utils.set_random_seed(cfg.seed)
    precision = set_precision(cfg.precision)
    image_size = int(train.images.shape[1])
    train_data = ArrayBatches(train.images, train.ages, cfg.batch_size, shuffle=True, seed=cfg.seed,
                              weights=age_weights(train.ages, cfg.weight_ages_10_30),
                              mixup=cfg.augment.mixup, label_jitter=cfg.augment.label_jitter)
    val_data = ArrayBatches(val.images, val.ages, cfg.batch_size, shuffle=False)
    model = build_model(cfg, image_size, train.ages)
    compile_model(model, cfg, steps_per_epoch=len(train_data))

    best = BestEpoch()
    all_callbacks: list[keras.callbacks.Callback] = [best, *(callbacks or [])]
    if cfg.time_budget_minutes > 0:
        all_callbacks.insert(0, TimeBudget(cfg, cfg.time_budget_minutes * 60))
    if cfg.early_stopping_patience > 0:
        all_callbacks.append(keras.callbacks.EarlyStopping(monitor="val_mae", mode="min",
                                                             patience=cfg.early_stopping_patience))
    if checkpoint is not None:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        all_callbacks.append(keras.callbacks.ModelCheckpoint(checkpoint, monitor="val_mae", mode="min", save_best_only=True,
                                                             save_weights_only=True))
    start = time.perf_counter()
    keras_history = model.fit(train_data, validation_data=val_data, epochs=cfg.epochs, callbacks=all_callbacks,
                              verbose=verbose)
    seconds = time.perf_counter() - start
    history = pd.DataFrame(keras_history.history)
    history.insert(0, "epoch", np.arange(1, len(history) + 1))
    if best.weights is not None:
        model.set_weights(best.weights)
    images_seen = len(train.ages) * len(history)
    return FitResult(inference_copy(model), history, best.epoch, best.value, seconds, images_seen / seconds,
                     precision)


def inference_copy(model: keras.Model) -> keras.Model:
    """The same network and weights without the optimizer state (a third of the size on disk), computing in
    float32 whatever the training precision: the weights are float32 anyway, and on this CPU a bf16 model
    predicts 2-3x slower than a float32 one (bench/speed.py)."""
    copy = keras.Model.from_config(_float32_policies(model.get_config()))  # uncompiled (clone_model would recompile)
    copy.set_weights(model.get_weights())
    return copy


def _float32_policies(node):
    """A model config with every mixed-precision dtype policy replaced by float32."""
    if isinstance(node, dict):
        if node.get("class_name") == "DTypePolicy" and isinstance(node.get("config"), dict):
            return {**node, "config": {**node["config"], "name": "float32"}}
        return {k: ("float32" if k == "dtype" and isinstance(v, str) and v.startswith("mixed_") else _float32_policies(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_float32_policies(v) for v in node]
    return node


def cosine_value(cfg: TrainConfig, progress: float) -> float:
    """Learning rate after warm-up at `progress` (0..1) of the remaining training: constant or cosine to 1%."""
    if cfg.schedule == "constant":
        return cfg.learning_rate
    return cfg.learning_rate * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress)))))


class TimeBudget(keras.callbacks.Callback):
    """Train for a wall-clock budget instead of a number of epochs.

    The learning rate warms up linearly over `warmup_epochs` epochs, then follows the cosine on elapsed
    time, reaching its minimum at the end of the budget; training stops after the last epoch expected to
    finish inside the budget. So the schedule completes whatever the speed of the machine, and `epochs`
    is only an upper bound.
    """

    def __init__(self, cfg: TrainConfig, budget_s: float):
        super().__init__()
        self.cfg, self.budget_s = cfg, budget_s
        self.start = self.epoch_start = self.warm_end = 0.0
        self.epoch = 0
        self.expected_epoch_s = 0.0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.start = self.warm_end = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch, self.epoch_start = epoch, time.perf_counter()
        if epoch == self.cfg.warmup_epochs:
            self.warm_end = self.epoch_start

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self.epoch < self.cfg.warmup_epochs:
            steps = self.params.get("steps") or 1
            progress = (self.epoch * steps + batch) / (self.cfg.warmup_epochs * steps)
            lr = self.cfg.learning_rate * (0.01 + 0.99 * progress)
        else:
            now = time.perf_counter()
            lr = cosine_value(self.cfg, (now - self.warm_end) / max(1.0, self.start + self.budget_s - self.warm_end))
        self.model.optimizer.learning_rate.assign(lr)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        now = time.perf_counter()
        duration = now - self.epoch_start
        # The first epoch also traces and compiles the model: later ones are faster.
        self.expected_epoch_s = 0.8 * duration if epoch == 0 else duration
        if now - self.start + self.expected_epoch_s > self.budget_s:
            self.model.stop_training = True


class BestEpoch(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the lowest val_mae in memory (tuning has no checkpoint file)."""

    def __init__(self) -> None:
        super().__init__()
        self.value, self.epoch, self.weights = math.inf, 0, None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get("val_mae", math.inf)
        if value < self.value:
            self.value, self.epoch, self.weights = float(value), epoch + 1, self.model.get_weights()


def run_train(params: Params, prepare_dir: Path, out_dir: Path = OUT_DIR) -> FitResult:
    """The train stage: fit on prepared data, write results/train/, log one MLflow run (params, the per-epoch
    curves, metrics; the model itself is logged by evaluate, with its ID-check rule)."""
    import mlflow

    from faceage.tracking import configure_tracking, run_tags, save_run_ref

    cfg = params.train
    data = load_prepared(prepare_dir)
    train, val = data.split("train"), data.split("val")
    report = json.loads((prepare_dir / "report.json").read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    experiment_id = configure_tracking()
    tags = run_tags({"data.md5": report.get("data_md5"), "data.layout": report.get("layout")})
    with mlflow.start_run(experiment_id=experiment_id, run_name=tags.get("dvc.exp_name"), tags=tags) as run:
        save_run_ref(run, out_dir)
        mlflow.log_params({**to_flat_dict(params.prepare, "prepare."), **to_flat_dict(cfg, "train.")})
        mlflow.log_params({"data.n_train": len(train.ages), "data.n_val": len(val.ages), "data.n_images": report["n_images"]})
        # The best-epoch weights and the CSV log are written every epoch, so an interrupted run keeps both.
        checkpoint = out_dir / CHECKPOINT_FILE
        result = fit(cfg, train, val, checkpoint=checkpoint,
                     callbacks=[mlflow.keras.MlflowCallback(), keras.callbacks.CSVLogger(out_dir / HISTORY_FILE)])
        mlflow.log_param("train.precision_used", result.precision)
        result.model.save(out_dir / MODEL_FILE)
        checkpoint.unlink(missing_ok=True)
        metrics = {"best_val_mae": round(result.best_val_mae, 4), "best_epoch": result.best_epoch,
                   "epochs_run": len(result.history), "train_seconds": round(result.seconds, 1),
                   "images_per_s": round(result.images_per_s, 2)}
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        mlflow.log_metrics(metrics)
        # The model goes to MLflow once, at evaluate, inside the `serving` pyfunc (Keras file + face crop + the
        # calibrated rule), the one the registry versions; a Keras-flavor copy here would store it twice per run.
        # CSVLogger counts epochs from 0; the finished history counts from 1, like the figures and MLflow UI.
        result.history.to_csv(out_dir / HISTORY_FILE, index=False)
    return result
