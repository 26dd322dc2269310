"""The prepare stage's cached dataset on disk, and how later stages read it.

results/prepare/images.npy  uint8 array (N, S, S, 3), decoded once
results/prepare/manifest.csv one row per image, aligned with images.npy (column `index`)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from faceage.errors import DataError

IMAGES_FILE = "images.npy"
MANIFEST_FILE = "manifest.csv"


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8 (n, S, S, 3)
    ages: np.ndarray    # float32 (n,)
    rows: pd.DataFrame  # manifest rows of this split


@dataclass(frozen=True)
class PreparedData:
    images: np.ndarray
    manifest: pd.DataFrame

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    def split(self, name: str) -> Split:
        rows = self.manifest[self.manifest["split"] == name]
        idx = rows["index"].to_numpy()
        return Split(np.asarray(self.images[idx]), rows["age"].to_numpy(dtype=np.float32), rows.reset_index(drop=True))


def save_prepared(out_dir: Path, images: np.ndarray, manifest: pd.DataFrame) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / IMAGES_FILE, images)
    manifest.to_csv(out_dir / MANIFEST_FILE, index=False)


def load_prepared(prepare_dir: Path) -> PreparedData:
    """Open the cached arrays (memory-mapped) and the manifest; clear error when prepare has not run."""
    images_path, manifest_path = prepare_dir / IMAGES_FILE, prepare_dir / MANIFEST_FILE
    if not images_path.is_file() or not manifest_path.is_file():
        raise DataError(f"{prepare_dir}: no prepared data; run `dvc repro prepare` (or `faceage prepare`) first")
    images = np.load(images_path, mmap_mode="r")
    manifest = pd.read_csv(manifest_path, dtype={"gender": "string", "race": "string", "official_split": "string"})
    if len(manifest) != len(images):
        raise DataError(f"{prepare_dir}: manifest.csv has {len(manifest)} rows but images.npy has {len(images)}; rerun prepare")
    return PreparedData(images, manifest)
