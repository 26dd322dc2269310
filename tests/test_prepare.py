"""The prepare stage on small generated datasets: report, quarantine, cached arrays; the demo generator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_course, write_noise_jpeg

from faceage.config import PrepareConfig
from faceage.data.demo import generate_demo
from faceage.data.prepared import load_prepared
from faceage.errors import DataError
from faceage.prepare import data_source, run_prepare

N_GOOD = 36
SIZE = 32


@pytest.fixture
def broken_course(tmp_path: Path) -> Path:
    """36 good images, then a corrupt file, a zero-byte file, a bad age, a text file and an orphan image."""
    rng = np.random.default_rng(0)
    ages = {f"img{i:03d}.jpg": int(a) for i, a in enumerate(rng.integers(1, 90, N_GOOD))}
    ages.update({"corrupt.jpg": 30, "empty.jpg": 40, "badage.jpg": "12.5", "text.jpg": 50})
    root = make_course(tmp_path / "data", ages, extra_files=["orphan.jpg"])
    full = write_noise_jpeg(tmp_path / "noise.jpg")
    (root / "final_files" / "corrupt.jpg").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    (root / "final_files" / "empty.jpg").write_bytes(b"")
    (root / "final_files" / "text.jpg").write_text("hello")
    return root


EXPECTED_BAD = {
    "final_files/corrupt.jpg": "truncated",
    "final_files/empty.jpg": "empty file",
    "final_files/badage.jpg": "not an integer",
    "final_files/text.jpg": "not an image",
    "final_files/orphan.jpg": "no row in labels.csv",
}


def cfg(root: Path, **kw) -> PrepareConfig:
    return PrepareConfig(data_dir=str(root), image_size=SIZE, **kw)


def test_run_prepare_with_broken_rows(broken_course: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = run_prepare(cfg(broken_course, max_bad_fraction=0.2), out_dir=out, progress=False)

    n_rows = N_GOOD + len(EXPECTED_BAD)
    assert report["layout"] == "course"
    assert report["n_rows"] == n_rows
    assert report["n_images"] == N_GOOD
    assert report["n_quarantined"] == len(EXPECTED_BAD)
    assert report["bad_fraction"] == pytest.approx(len(EXPECTED_BAD) / n_rows, abs=1e-6)
    assert sum(report["split"].values()) == N_GOOD
    assert report["split"]["train"] > report["split"]["val"] > 0
    assert report["image_size"] == SIZE
    assert report["data_dir"] == str(broken_course)
    assert report["data_md5"] is None
    assert json.loads((out / "report.json").read_text()) == report

    quarantine = pd.read_csv(out / "quarantine.csv")
    assert list(quarantine.columns) == ["file", "reason"]
    assert sorted(quarantine["file"]) == sorted(EXPECTED_BAD)
    assert quarantine["file"].tolist() == sorted(quarantine["file"])  # sorted for diffing
    for file, reason in zip(quarantine["file"], quarantine["reason"]):
        assert EXPECTED_BAD[file] in reason, (file, reason)

    images = np.load(out / "images.npy")
    manifest = pd.read_csv(out / "manifest.csv")
    assert images.shape == (len(manifest), SIZE, SIZE, 3) == (N_GOOD, SIZE, SIZE, 3)
    assert images.dtype == np.uint8
    assert manifest["index"].tolist() == list(range(N_GOOD))
    assert not set(manifest["file"]) & set(EXPECTED_BAD)
    assert set(manifest["split"]) <= {"train", "val", "test"}
    assert {"age", "group", "mode", "exif_rotated", "width"} <= set(manifest.columns)
    for name in ("age_histogram.png", "age_groups.png", "sample_faces.png", "image_sizes.png"):
        assert (out / "eda" / name).stat().st_size > 0

    # rows line up with pixels: each cached face has the colour its source image was written with
    row = manifest.set_index("file").loc["final_files/img005.jpg"]
    expected = np.array([40 + 3 * 5, 100, 160])
    assert np.abs(images[int(row["index"])].reshape(-1, 3).mean(0) - expected).max() < 4

    prepared = load_prepared(out)
    assert prepared.image_size == SIZE
    train = prepared.split("train")
    assert len(train.ages) == report["split"]["train"] == len(train.images)


def test_run_prepare_is_deterministic(broken_course: Path, tmp_path: Path) -> None:
    a = run_prepare(cfg(broken_course, max_bad_fraction=0.2), out_dir=tmp_path / "a", progress=False)
    b = run_prepare(cfg(broken_course, max_bad_fraction=0.2), out_dir=tmp_path / "b", progress=False)
    assert a == b
    for name in ("manifest.csv", "quarantine.csv", "images.npy"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_too_many_bad_rows_stops_but_writes_quarantine(broken_course: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(DataError) as info:
        run_prepare(cfg(broken_course, max_bad_fraction=0.05), out_dir=out, progress=False)
    msg = str(info.value)
    assert "quarantine.csv" in msg and "max_bad_fraction" in msg
    assert f"{len(EXPECTED_BAD)} of {N_GOOD + len(EXPECTED_BAD)}" in msg
    quarantine = pd.read_csv(out / "quarantine.csv")
    assert sorted(quarantine["file"]) == sorted(EXPECTED_BAD)
    assert not (out / "images.npy").exists()
    assert not (out / "report.json").exists()


def test_all_images_broken_is_an_error_even_when_allowed(tmp_path: Path) -> None:
    root = make_course(tmp_path / "data", {"a.jpg": 20, "b.jpg": 30})
    for name in ("a.jpg", "b.jpg"):
        (root / "final_files" / name).write_bytes(b"")
    with pytest.raises(DataError):
        run_prepare(cfg(root, max_bad_fraction=1.0), out_dir=tmp_path / "out", progress=False)


def test_data_source_reads_dvc_md5(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (tmp_path / "data.dvc").write_text("outs:\n- md5: 0123456789abcdef.dir\n  path: data\n")
    assert data_source(root) == {"data_dir": str(root), "data_md5": "0123456789abcdef.dir"}


def test_demo_is_byte_identical_and_prepares(tmp_path: Path) -> None:
    a, b = tmp_path / "demo_a", tmp_path / "demo_b"
    assert generate_demo(a, n=20, progress=False) == 20
    generate_demo(b, n=20, progress=False)
    files_a = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    assert len(files_a) == 21  # labels.csv + 20 images
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel

    labels = pd.read_csv(a / "labels.csv")
    assert list(labels.columns) == ["file_name", "real_age"]
    assert labels["real_age"].between(1, 100).all()

    # another seed gives other pictures
    c = tmp_path / "demo_c"
    generate_demo(c, n=20, seed=1, progress=False)
    assert (c / "final_files" / "000000.jpg").read_bytes() != (a / "final_files" / "000000.jpg").read_bytes()

    report = run_prepare(PrepareConfig(data_dir=str(a), image_size=SIZE), out_dir=tmp_path / "out", progress=False)
    assert report["layout"] == "course"
    assert report["n_images"] == 20 and report["n_quarantined"] == 0
    assert np.load(tmp_path / "out" / "images.npy").shape == (20, SIZE, SIZE, 3)
