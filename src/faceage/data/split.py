"""Seeded train/val/test split, stratified by age group (or the dataset's official split)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from faceage.ages import age_group

SPLITS = ("train", "val", "test")


def stratified_split(ages: np.ndarray, val_fraction: float, test_fraction: float, seed: int) -> np.ndarray:
    """Assign each age to train/val/test so that every age group keeps the same proportions.

    Within each group the items are shuffled with `seed`, then the first round(n*test) go to test and
    the next round(n*val) to val. Same ages + same seed -> same split, whatever the row order of a
    different run would be (items are identified by position).
    """
    rng = np.random.default_rng(seed)
    groups = age_group(ages)
    out = np.full(len(ages), "train", dtype=object)
    for label in sorted(set(groups)):
        idx = np.flatnonzero(groups == label)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(len(idx) * test_fraction))
        n_val = int(round(len(idx) * val_fraction))
        # Keep at least one item of every group in train: rounding must not empty a small group's train part.
        n_test = min(n_test, len(idx) - 1)
        n_val = min(n_val, len(idx) - 1 - n_test)
        out[idx[:n_test]] = "test"
        out[idx[n_test:n_test + n_val]] = "val"
    return out


def assign_split(manifest: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int) -> pd.Series:
    """The official split where the source has one (APPA-REAL), else a stratified seeded split."""
    official = manifest["official_split"]
    if official.notna().all() and len(manifest):
        return official.astype(str)
    ages = manifest["age"].to_numpy(dtype=float)
    return pd.Series(stratified_split(ages, val_fraction, test_fraction, seed), index=manifest.index)
