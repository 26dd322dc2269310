"""Seeded, age-stratified split; the official split is kept when the source has one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from faceage.ages import GROUP_LABELS, age_group
from faceage.data.split import SPLITS, assign_split, stratified_split


@pytest.fixture(scope="module")
def ages() -> np.ndarray:
    # every age group present, with very different sizes (200 young adults, 20 seniors)
    rng = np.random.default_rng(0)
    parts = [rng.integers(0, 13, 40), rng.integers(13, 18, 30), rng.integers(18, 25, 200), rng.integers(25, 35, 150),
             rng.integers(35, 45, 80), rng.integers(45, 55, 60), rng.integers(55, 65, 40), rng.integers(65, 100, 20)]
    return rng.permutation(np.concatenate(parts)).astype(float)


def test_values_and_length(ages: np.ndarray) -> None:
    split = stratified_split(ages, 0.15, 0.15, seed=1)
    assert len(split) == len(ages)
    assert set(split) == set(SPLITS)


def test_same_seed_same_split(ages: np.ndarray) -> None:
    a = stratified_split(ages, 0.15, 0.15, seed=7)
    b = stratified_split(ages.copy(), 0.15, 0.15, seed=7)
    assert (a == b).all()


def test_other_seed_other_split(ages: np.ndarray) -> None:
    a = stratified_split(ages, 0.15, 0.15, seed=7)
    b = stratified_split(ages, 0.15, 0.15, seed=8)
    assert (a != b).sum() > 0.1 * len(ages)
    # but the counts per split and group are the same: only which items go where changes
    ca = pd.crosstab(age_group(ages), a)
    cb = pd.crosstab(age_group(ages), b)
    pd.testing.assert_frame_equal(ca, cb)


@pytest.mark.parametrize(("val", "test"), [(0.15, 0.15), (0.1, 0.2), (0.25, 0.25)])
def test_proportions_per_group(ages: np.ndarray, val: float, test: float) -> None:
    split = stratified_split(ages, val, test, seed=3)
    groups = age_group(ages)
    for label in GROUP_LABELS:
        mask = groups == label
        n = mask.sum()
        assert n > 0
        n_val, n_test = (split[mask] == "val").sum(), (split[mask] == "test").sum()
        # per group rounding: at most half an item off the exact fraction
        assert abs(n_val - val * n) <= 0.5 + 1e-9, (label, n, n_val)
        assert abs(n_test - test * n) <= 0.5 + 1e-9, (label, n, n_test)
        assert (split[mask] == "train").sum() > 0
    overall = {s: (split == s).mean() for s in SPLITS}
    assert overall["val"] == pytest.approx(val, abs=0.01)
    assert overall["test"] == pytest.approx(test, abs=0.01)


@pytest.mark.parametrize(("val", "test"), [(0.3, 0.3), (0.5, 0.35), (0.35, 0.5), (0.45, 0.4)])
@pytest.mark.parametrize("n_small", [1, 2, 3])
def test_every_group_keeps_a_training_item(val: float, test: float, n_small: int) -> None:
    # a tiny group (1-3 seniors) must not vanish from train through rounding
    ages = np.array([70.0 + i for i in range(n_small)] + [30.0] * 20)
    for seed in range(5):
        split = stratified_split(ages, val, test, seed)
        assert (split[:n_small] == "train").any(), (val, test, n_small, seed, split[:n_small])


def test_positions_not_row_order() -> None:
    # items are identified by position: the same ages give the same labels per position
    ages = np.array([5.0, 30.0, 31.0, 32.0, 33.0, 70.0, 15.0, 20.0, 21.0, 22.0])
    assert list(stratified_split(ages, 0.2, 0.2, 0)) == list(stratified_split(ages, 0.2, 0.2, 0))


def manifest(ages: list[float], official: list[str | None]) -> pd.DataFrame:
    return pd.DataFrame({"file": [f"f{i}.jpg" for i in range(len(ages))], "age": ages, "official_split": official})


def test_assign_split_keeps_official_split() -> None:
    official = ["train", "val", "test", "train", "train", "test"]
    m = manifest([20, 30, 40, 50, 60, 70], official)
    out = assign_split(m, 0.15, 0.15, seed=0)
    assert out.tolist() == official
    # the fractions and the seed do not matter when there is an official split
    assert assign_split(m, 0.4, 0.4, seed=99).tolist() == official


def test_assign_split_without_official_split_is_stratified() -> None:
    ages = list(np.linspace(1, 90, 60))
    m = manifest(ages, [None] * 60)
    out = assign_split(m, 0.2, 0.2, seed=5)
    assert isinstance(out, pd.Series)
    assert out.index.equals(m.index)
    assert out.tolist() == list(stratified_split(np.asarray(ages), 0.2, 0.2, 5))
    assert set(out) == set(SPLITS)


def test_assign_split_partial_official_split_falls_back() -> None:
    ages = list(np.linspace(1, 90, 40))
    m = manifest(ages, ["test"] + [None] * 39)
    out = assign_split(m, 0.2, 0.2, seed=5)
    assert out.tolist() == list(stratified_split(np.asarray(ages), 0.2, 0.2, 5))


def test_assign_split_empty_manifest() -> None:
    out = assign_split(manifest([], []), 0.15, 0.15, seed=0)
    assert len(out) == 0
