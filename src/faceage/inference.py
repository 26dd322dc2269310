"""Loading a trained model and predicting ages from decoded faces: one way, used by every stage."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from faceage.errors import DataError


def load_model(path: Path) -> keras.Model:
    """Load a saved faceage model (.keras); clear error when it does not exist yet."""
    import faceage.model  # noqa: F401  (registers the custom preprocessing layer for deserialisation)

    if not path.is_file():
        raise DataError(f"{path}: no trained model; run `dvc repro train` (or `faceage train`) first")
    return keras.saving.load_model(path, compile=False)


def input_size(model: keras.Model) -> int:
    return int(model.input_shape[1])


class _Images(keras.utils.PyDataset):
    """uint8 faces -> float32 batches, converted one batch at a time (large sets never double in memory)."""

    def __init__(self, images: np.ndarray, batch_size: int, flip: bool):
        super().__init__()
        self.images, self.batch_size, self.flip = images, batch_size, flip

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def __getitem__(self, i: int) -> np.ndarray:
        batch = np.asarray(self.images[i * self.batch_size:(i + 1) * self.batch_size], dtype="float32")
        return batch[:, :, ::-1] if self.flip else batch


def predict_ages(model: keras.Model, images: np.ndarray, batch_size: int = 64, tta_flip: bool = False) -> np.ndarray:
    """Predicted ages (float32, shape (n,)); with tta_flip, the mean over the face and its mirror image."""
    if len(images) == 0:
        return np.zeros(0, dtype="float32")
    pred = model.predict(_Images(images, batch_size, flip=False), verbose=0).reshape(-1)
    if tta_flip:
        pred = (pred + model.predict(_Images(images, batch_size, flip=True), verbose=0).reshape(-1)) / 2
    return pred.astype("float32")
