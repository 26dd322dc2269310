"""Dataset layout readers: manifests, problems with reasons, layout detection and its errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import UTK_NAMES, make_appa, make_course, make_utkface, write_csv, write_jpeg

from faceage.data.layouts import (
    MANIFEST_COLUMNS,
    detect_layout,
    read_appa,
    read_course,
    read_dataset,
    read_utkface,
)
from faceage.errors import DataError


def reasons(result) -> dict[str, str]:
    """file -> reason (asserting there is one problem per file)."""
    problems = result.problems
    assert list(problems.columns) == ["file", "reason"]
    assert problems["file"].is_unique, problems
    return dict(zip(problems["file"], problems["reason"]))


# --- course ---------------------------------------------------------------------------------------

def test_read_course_clean(course_dir: Path) -> None:
    result = read_course(course_dir)
    assert result.layout == "course"
    assert list(result.manifest.columns) == MANIFEST_COLUMNS
    assert result.problems.empty
    m = result.manifest.sort_values("file").reset_index(drop=True)
    assert m["file"].tolist() == [f"final_files/{i:03d}.jpg" for i in range(6)]
    assert m["age"].tolist() == [3, 15, 21, 30, 47, 70]
    assert (m["real_age"] == m["age"]).all()
    assert m["official_split"].isna().all()
    assert m["apparent_age"].isna().all()
    # every manifest path exists relative to the data root
    assert all((course_dir / f).is_file() for f in m["file"])


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        ("12.5", "not an integer"),
        ("abc", "not a number"),
        ("", "not a number"),
        ("nan", "not a number"),
        ("130", "outside 0-120"),
        ("-1", "outside 0-120"),
        ("121", "outside 0-120"),
    ],
)
def test_read_course_bad_age_is_a_problem(tmp_path: Path, age: str, expected: str) -> None:
    root = make_course(tmp_path / "d", {"good.jpg": 30, "bad.jpg": age})
    result = read_course(root)
    assert result.manifest["file"].tolist() == ["final_files/good.jpg"]
    why = reasons(result)
    assert set(why) == {"final_files/bad.jpg"}
    assert expected in why["final_files/bad.jpg"]
    assert "labels.csv line 3" in why["final_files/bad.jpg"]
    assert repr(age) in why["final_files/bad.jpg"]


@pytest.mark.parametrize("age", ["0", "120", "7.0", " 42 "])
def test_read_course_edge_ages_are_accepted(tmp_path: Path, age: str) -> None:
    root = make_course(tmp_path / "d", {"a.jpg": age})
    result = read_course(root)
    assert result.problems.empty, result.problems
    assert result.manifest["age"].tolist() == [float(age)]


def test_read_course_duplicate_missing_and_unlabelled(tmp_path: Path) -> None:
    root = make_course(
        tmp_path / "d",
        {"a.jpg": 20, "b.jpg": 30},
        extra_rows=[("a.jpg", 21), ("ghost.jpg", 40)],
        extra_files=["orphan.jpg"],
    )
    result = read_course(root)
    assert sorted(result.manifest["file"]) == ["final_files/a.jpg", "final_files/b.jpg"]
    # the first row of a duplicated file wins
    assert result.manifest.set_index("file").loc["final_files/a.jpg", "age"] == 20
    assert len(result.problems) == 3
    problems = result.problems
    dup = problems[problems["file"] == "final_files/a.jpg"]["reason"].tolist()
    assert len(dup) == 1 and "duplicate row" in dup[0] and "line 2" in dup[0] and "line 4" in dup[0]
    why = dict(zip(problems["file"], problems["reason"]))
    assert "file not found" in why["final_files/ghost.jpg"]
    assert why["final_files/orphan.jpg"] == "no row in labels.csv"


def test_read_course_missing_column(tmp_path: Path) -> None:
    root = tmp_path / "d"
    write_jpeg(root / "final_files" / "a.jpg")
    write_csv(root / "labels.csv", ["file_name", "age"], [("a.jpg", 3)])
    with pytest.raises(DataError, match="real_age"):
        read_course(root)


# --- APPA-REAL ------------------------------------------------------------------------------------

def test_read_appa_real_target_prefers_face_crops_and_keeps_split(appa_dir: Path) -> None:
    result = read_appa(appa_dir, "real")
    assert result.layout == "appa"
    assert result.problems.empty, result.problems
    m = result.manifest.set_index("file")
    assert sorted(m.index) == sorted([
        "train/000000.jpg_face.jpg", "train/000001.jpg", "train/000002.jpg",
        "valid/004113.jpg_face.jpg", "valid/004114.jpg", "test/005613.jpg",
    ])
    # official split kept, "valid" renamed to "val"
    assert m["official_split"].to_dict() == {
        "train/000000.jpg_face.jpg": "train", "train/000001.jpg": "train", "train/000002.jpg": "train",
        "valid/004113.jpg_face.jpg": "val", "valid/004114.jpg": "val", "test/005613.jpg": "test",
    }
    assert m.loc["train/000001.jpg", "age"] == 43
    assert m.loc["train/000001.jpg", "real_age"] == 43
    assert m.loc["train/000001.jpg", "apparent_age"] == pytest.approx(40.25)
    assert (m["age"] == m["real_age"]).all()


def test_read_appa_apparent_target(appa_dir: Path) -> None:
    m = read_appa(appa_dir, "apparent").manifest.set_index("file")
    assert m.loc["train/000001.jpg", "age"] == pytest.approx(40.25)
    assert m.loc["test/005613.jpg", "age"] == pytest.approx(17.5)
    assert m.loc["test/005613.jpg", "real_age"] == 16
    assert np.allclose(m["age"], m["apparent_age"])


def test_read_appa_bad_rows(tmp_path: Path) -> None:
    root = make_appa(
        tmp_path / "appa",
        {
            "train": [("a.jpg", "20.5", "20"), ("b.jpg", "20.5", "20.5"), ("c.jpg", "abc", "33")],
            "valid": [("d.jpg", "30", "130")],
            "test": [("e.jpg", "30", "31")],
        },
    )
    (root / "test" / "e.jpg").unlink()
    real = read_appa(root, "real")
    assert real.manifest["file"].tolist() == ["train/a.jpg"]
    why = reasons(real)
    assert "not an integer" in why["train/b.jpg"] and "gt_avg_train.csv line 3" in why["train/b.jpg"]
    assert "not a number" in why["train/c.jpg"]  # the apparent age is checked too
    assert "outside 0-120" in why["valid/d.jpg"] and "gt_avg_valid.csv" in why["valid/d.jpg"]
    assert "file not found" in why["test/e.jpg"]
    # the apparent target allows a fractional apparent age but still checks the real age
    apparent = read_appa(root, "apparent")
    assert "not an integer" in reasons(apparent)["train/b.jpg"]


# --- UTKFace --------------------------------------------------------------------------------------

def test_read_utkface(utk_dir: Path) -> None:
    result = read_utkface(utk_dir)
    assert result.layout == "utkface"
    assert result.problems.empty
    m = result.manifest.set_index("file")
    assert sorted(m.index) == sorted(UTK_NAMES)
    row = m.loc["25_0_1_20170116174525125.jpg.chip.jpg"]
    assert (row["age"], row["real_age"], row["gender"], row["race"]) == (25, 25, "0", "1")
    assert m.loc["3_1_2_20161219203650636.jpg.chip.jpg", "gender"] == "1"
    assert m.loc["3_1_2_20161219203650636.jpg.chip.jpg", "race"] == "2"
    # a name lacking a field keeps its age; gender/race are unknown rather than guessed
    short = m.loc["39_1_20170116174525125.jpg.chip.jpg"]
    assert short["age"] == 39
    assert short["gender"] is None or pd.isna(short["gender"])
    assert short["race"] is None or pd.isna(short["race"])
    assert m["official_split"].isna().all()


def test_read_utkface_bad_names_and_subfolders(tmp_path: Path) -> None:
    root = make_utkface(tmp_path / "utk", ["part1/30_1_0_2017.jpg.chip.jpg", "130_0_0_2017.jpg.chip.jpg",
                                           "face.jpg", "x_0_0_2017.jpg"])
    (root / "notes.txt").write_text("not an image, ignored")
    result = read_utkface(root)
    assert result.manifest["file"].tolist() == ["part1/30_1_0_2017.jpg.chip.jpg"]
    why = reasons(result)
    assert set(why) == {"130_0_0_2017.jpg.chip.jpg", "face.jpg", "x_0_0_2017.jpg"}
    assert "outside 0-120" in why["130_0_0_2017.jpg.chip.jpg"]
    assert "<age>_" in why["face.jpg"]


# --- detection and errors -------------------------------------------------------------------------

def test_detect_layout_each(course_dir: Path, appa_dir: Path, utk_dir: Path) -> None:
    assert detect_layout(course_dir) == "course"
    assert detect_layout(appa_dir) == "appa"
    assert detect_layout(utk_dir) == "utkface"


def test_read_dataset_auto_dispatches(course_dir: Path, appa_dir: Path, utk_dir: Path) -> None:
    assert read_dataset(course_dir).layout == "course"
    appa = read_dataset(appa_dir, target="apparent")
    assert appa.layout == "appa"
    assert appa.manifest.set_index("file").loc["train/000001.jpg", "age"] == pytest.approx(40.25)
    assert read_dataset(utk_dir, layout="utkface").layout == "utkface"


def test_unknown_layout_lists_expected_layouts(tmp_path: Path) -> None:
    root = tmp_path / "weird"
    write_jpeg(root / "photo.jpg")
    (root / "labels.csv").write_text("file_name,real_age\nphoto.jpg,3\n")  # but no final_files/
    with pytest.raises(DataError) as info:
        detect_layout(root)
    msg = str(info.value)
    assert "unknown dataset layout" in msg
    for expected in ("(course)", "labels.csv", "final_files", "(appa)", "gt_avg_train.csv", "(utkface)"):
        assert expected in msg
    with pytest.raises(DataError, match="unknown dataset layout"):
        read_dataset(root)


def test_appa_needs_all_three_csvs(appa_dir: Path) -> None:
    (appa_dir / "gt_avg_test.csv").unlink()
    with pytest.raises(DataError, match="unknown dataset layout"):
        detect_layout(appa_dir)


@pytest.mark.parametrize("layout", ["auto", "course", "appa", "utkface"])
def test_missing_data_folder_says_how_to_get_data(tmp_path: Path, layout: str) -> None:
    with pytest.raises(DataError) as info:
        read_dataset(tmp_path / "nope", layout=layout)
    msg = str(info.value)
    assert "not found" in msg and "make demo" in msg and "dvc pull" in msg


def test_forced_layout_on_wrong_folder_is_a_data_error(utk_dir: Path) -> None:
    with pytest.raises(DataError, match="labels.csv"):
        read_dataset(utk_dir, layout="course")


def test_unsupported_layout_name(course_dir: Path) -> None:
    with pytest.raises(DataError, match="not supported"):
        read_dataset(course_dir, layout="imdb")


def test_manifest_age_is_numeric(course_dir: Path) -> None:
    ages = read_course(course_dir).manifest["age"]
    assert all(isinstance(a, float) and not math.isnan(a) for a in ages)
