"""Shared fixtures: tiny datasets generated on the fly in tmp_path (no network, no real faces)."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("MPLBACKEND", "Agg")

Color = tuple[int, int, int]


@pytest.fixture(autouse=True)
def _xdist_group_applied(request: pytest.FixtureRequest) -> None:
    """Fail loudly if pytest-xdist's `--dist loadgroup` ignored this test's `xdist_group` mark.

    xdist 3.8.0 groups by rewriting `item._nodeid`; pytest 9.2.0 keeps node ids elsewhere, so the groups were
    silently ignored and the e2e module's repo copy + `dvc repro` ran once per worker (pytest is pinned to 9.1.1)."""
    if getattr(request.config.option, "loadgroup", False) and request.node.get_closest_marker("xdist_group"):
        if "@" not in request.node.nodeid:
            pytest.fail("--dist loadgroup ignored this test's xdist_group mark: the pytest/pytest-xdist versions "
                        "do not work together (see the pins in pyproject.toml)")


def write_jpeg(path: Path, size: tuple[int, int] = (40, 40), color: Color = (200, 150, 120), **save_kwargs) -> Path:
    """Write a solid-colour RGB JPEG (creating parent folders) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format="JPEG", quality=90, **save_kwargs)
    return path


def write_noise_jpeg(path: Path, size: tuple[int, int] = (120, 120), seed: int = 0) -> Path:
    """A JPEG of random noise: most of its bytes are entropy-coded data (useful to truncate)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)
    return path


def write_csv(path: Path, header: list[str], rows: Iterable[Iterable[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def make_course(root: Path, ages: dict[str, object], extra_files: Iterable[str] = (),
                extra_rows: Iterable[tuple[str, object]] = ()) -> Path:
    """Course layout: labels.csv (file_name,real_age) + final_files/.

    `ages` maps file name -> age written in the CSV, and an image is written for each; `extra_rows`
    are CSV rows without an image; `extra_files` are images without a CSV row.
    """
    for i, name in enumerate(ages):
        write_jpeg(root / "final_files" / name, color=(40 + 3 * i % 200, 100, 160))
    for name in extra_files:
        write_jpeg(root / "final_files" / name)
    write_csv(root / "labels.csv", ["file_name", "real_age"], [*ages.items(), *extra_rows])
    return root


APPA_HEADER = ["file_name", "num_ratings", "apparent_age_avg", "apparent_age_std", "real_age"]


def make_appa(root: Path, splits: dict[str, list[tuple[str, object, object]]],
              face_crops: Iterable[str] = ()) -> Path:
    """APPA-REAL layout. `splits` maps folder (train/valid/test) -> [(file_name, apparent_avg, real_age)].

    Every listed photo is written; names in `face_crops` also get a `<name>_face.jpg` crop (in a
    different colour, so tests can tell which file was read).
    """
    crops = set(face_crops)
    for folder in ("train", "valid", "test"):
        rows = []
        for name, apparent, real in splits.get(folder, []):
            write_jpeg(root / folder / name, size=(60, 60), color=(10, 10, 10))
            if name in crops:
                write_jpeg(root / folder / f"{name}_face.jpg", color=(250, 250, 250))
            rows.append([name, 30, apparent, 4.2, real])
        write_csv(root / f"gt_avg_{folder}.csv", APPA_HEADER, rows)
    return root


def make_utkface(root: Path, names: Iterable[str]) -> Path:
    for name in names:
        write_jpeg(root / name)
    return root


@pytest.fixture
def jpeg_writer() -> Callable[..., Path]:
    return write_jpeg


@pytest.fixture
def course_dir(tmp_path: Path) -> Path:
    """A clean course dataset with 6 good images."""
    ages = {f"{i:03d}.jpg": age for i, age in enumerate([3, 15, 21, 30, 47, 70])}
    return make_course(tmp_path / "course", ages)


@pytest.fixture
def appa_dir(tmp_path: Path) -> Path:
    """A clean APPA dataset: 3 train, 2 valid, 1 test; two photos ship a face crop."""
    return make_appa(
        tmp_path / "appa",
        {
            "train": [("000000.jpg", "25.5", "24"), ("000001.jpg", "40.25", "43"), ("000002.jpg", "8.0", "7")],
            "valid": [("004113.jpg", "31.75", "30"), ("004114.jpg", "66.0", "70")],
            "test": [("005613.jpg", "17.5", "16")],
        },
        face_crops=["000000.jpg", "004113.jpg"],
    )


UTK_NAMES = [
    "25_0_1_20170116174525125.jpg.chip.jpg",
    "3_1_2_20161219203650636.jpg.chip.jpg",
    "70_0_0_20170111182452832.jpg.chip.jpg",
    "39_1_20170116174525125.jpg.chip.jpg",  # lacks the race field (as a few real UTKFace names do)
]


@pytest.fixture
def utk_dir(tmp_path: Path) -> Path:
    return make_utkface(tmp_path / "utk", UTK_NAMES)
