"""Loading a trained model and predicting ages from decoded faces: one way, used by every stage."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from faceage.errors import DataError
from faceage.estimates import Estimates


def load_model(path: Path) -> keras.Model:
    """Load a saved faceage model (.keras); clear error when it does not exist yet."""
    import faceage.model  # noqa: F401  (registers the custom preprocessing layer for deserialisation)

    if not path.is_file():
        raise DataError(f"{path}: no trained model; run `dvc repro train` (or `faceage train`) first")
    return keras.saving.load_model(path, compile=False)


def input_size(model: keras.Model) -> int:
    return int(model.input_shape[1])


def _predict_batch(model: keras.Model, batch: np.ndarray, flip: bool) -> np.ndarray:
    x = np.asarray(batch, dtype="float32")
    if flip:
        x = x[:, :, ::-1]
    return np.asarray(model.predict_on_batch(x), dtype="float32")


def estimate(model: keras.Model, images: np.ndarray, batch_size: int = 64, tta_flip: bool = False) -> Estimates:
    """The model's estimates for decoded faces; with tta_flip, the mean output over the face and its mirror.

    One compiled `predict_on_batch` call per batch: `model.predict` costs ~50 ms of set-up per call, which
    dominates one-photo checkout latency, and an eager `model(x)` is ~8x slower still (bench/speed.py).
    uint8 faces are converted to float32 one batch at a time, so large sets never double in memory.
    """
    width = int(model.output_shape[-1])
    out = np.zeros((len(images), width), dtype="float32")
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        pred = _predict_batch(model, batch, flip=False)
        if tta_flip:
            pred = (pred + _predict_batch(model, batch, flip=True)) / 2
        out[start:start + len(pred)] = pred.reshape(len(pred), width)
    if width == 1:
        return Estimates(out[:, 0])
    ages = (out @ np.arange(width, dtype="float32")).astype("float32")
    return Estimates(ages, out)


def predict_ages(model: keras.Model, images: np.ndarray, batch_size: int = 64, tta_flip: bool = False) -> np.ndarray:
    """Predicted ages (float32, shape (n,)): `estimate(...).ages`."""
    return estimate(model, images, batch_size, tta_flip).ages
