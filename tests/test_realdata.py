"""Real faces: the shared UTKFace sample read in place from ../shared (never copied into the project).

With CI=true a missing sample is a failure, not a skip: CI has it beside the clone.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from faceage.config import PrepareConfig
from faceage.data.layouts import detect_layout, read_dataset
from faceage.prepare import run_prepare

pytestmark = pytest.mark.realdata

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "utkface-sample" / "images"


@pytest.fixture(scope="module")
def utk_images() -> Path:
    if not SHARED.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{SHARED} is missing: CI must have the shared UTKFace sample beside the clone")
        pytest.skip(f"{SHARED} not found")
    return SHARED


def test_utkface_reader_reads_the_whole_sample(utk_images: Path) -> None:
    assert detect_layout(utk_images) == "utkface"
    result = read_dataset(utk_images)
    m = result.manifest
    assert len(m) + len(result.problems) == len(list(utk_images.iterdir()))
    assert len(m) > 7000
    assert m["age"].min() >= 0 and m["age"].max() <= 120 and m["age"].median() == pytest.approx(25, abs=5)
    assert (m["age"] == 1).sum() > 500  # UTKFace has many infants
    assert m["gender"].isin(["0", "1"]).mean() > 0.99


def test_course_layout_of_real_faces_prepares_cleanly(utk_images: Path, tmp_path: Path) -> None:
    """A few hundred real faces written as the seed's course layout (labels.csv + final_files/)."""
    files = sorted(utk_images.iterdir())[::25][:300]
    root = tmp_path / "course"
    (root / "final_files").mkdir(parents=True)
    with open(root / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file_name", "real_age"])
        for i, path in enumerate(files):
            name = f"{i:06d}.jpg"
            shutil.copyfile(path, root / "final_files" / name)
            writer.writerow([name, path.name.split("_")[0]])
    out = tmp_path / "prepared"
    report = run_prepare(PrepareConfig(data_dir=str(root), image_size=48), out, progress=False)
    assert report["layout"] == "course"
    assert report["n_images"] == len(files) and report["n_quarantined"] == 0
    images = np.load(out / "images.npy")
    assert images.shape == (len(files), 48, 48, 3) and images.dtype == np.uint8
    assert 40 < images.mean() < 220  # real photos, not blank arrays
    assert sum(report["split"].values()) == len(files) and min(report["split"].values()) > 20
    assert {p.name for p in (out / "eda").iterdir()} >= {"age_histogram.png", "sample_faces.png"}
