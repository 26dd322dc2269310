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


def shifted(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Faces moved by (dy, dx) pixels (down/right when positive), the edge rows/columns repeated (no black border)."""
    h, w = images.shape[1:3]
    py, px = abs(dy), abs(dx)
    padded = np.pad(images, ((0, 0), (py, py), (px, px), (0, 0)), mode="edge")
    return padded[:, py - dy: py - dy + h, px - dx: px - dx + w]


def tta_views(tta_flip: bool, tta_shift_px: int) -> list[tuple[bool, int, int]]:
    """The test-time views (flip, dy, dx): the face, its mirror with tta_flip, and each moved by +-tta_shift_px."""
    shifts = [(0, 0)] + ([(tta_shift_px, 0), (-tta_shift_px, 0), (0, tta_shift_px), (0, -tta_shift_px)]
                         if tta_shift_px > 0 else [])
    return [(flip, dy, dx) for flip in ((False, True) if tta_flip else (False,)) for dy, dx in shifts]


def _view(batch: np.ndarray, flip: bool, dy: int, dx: int) -> np.ndarray:
    x = shifted(batch, dy, dx) if (dy or dx) else batch
    return x[:, :, ::-1] if flip else x


def estimate(model: keras.Model, images: np.ndarray, batch_size: int = 64, tta_flip: bool = False,
             tta_shift_px: int = 0) -> Estimates:
    """The model's estimates for decoded faces: the mean output over the test-time views (see tta_views; one view,
    the face itself, by default).

    One compiled `predict_on_batch` call per batch, all views stacked: `model.predict` costs ~50 ms of set-up per
    call, which dominates one-photo checkout latency, and an eager `model(x)` is ~8x slower still (bench/speed.py).
    uint8 faces are converted to float32 one batch at a time, so large sets never double in memory.
    """
    width = int(model.output_shape[-1])
    views = tta_views(tta_flip, tta_shift_px)
    out = np.zeros((len(images), width), dtype="float32")
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        x = np.concatenate([_view(batch, *view) for view in views]).astype("float32")
        pred = np.asarray(model.predict_on_batch(x), dtype="float32").reshape(len(views), len(batch), width)
        out[start:start + len(batch)] = pred.mean(axis=0)
    if width == 1:                                  # regression head: the age
        return Estimates(out[:, 0])
    if width == 2:                                  # gaussian head: the age and its spread
        return Estimates(out[:, 0], spread=out[:, 1])
    ages = (out @ np.arange(width, dtype="float32")).astype("float32")   # dex head: P(age) per whole age
    return Estimates(ages, out)


def predict_ages(model: keras.Model, images: np.ndarray, batch_size: int = 64, tta_flip: bool = False) -> np.ndarray:
    """Predicted ages (float32, shape (n,)): `estimate(...).ages`."""
    return estimate(model, images, batch_size, tta_flip).ages
