"""Readers for the supported dataset layouts, each returning one manifest.

A manifest is a DataFrame with one row per labelled image:
  file (path relative to the data root), age (the target), real_age, apparent_age (NaN when unknown),
  official_split (train/val/test or None), gender and race (UTKFace only, else None).
Rows that cannot be used (bad age, duplicate, missing file, unlabelled file) are returned separately as
problems (file, reason) so that nothing is dropped silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from faceage.ages import MAX_AGE, MIN_AGE
from faceage.errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
MANIFEST_COLUMNS = ["file", "age", "real_age", "apparent_age", "official_split", "gender", "race"]
UTK_NAME = re.compile(r"^(\d+)_")
UTK_GENDERS = {"0": "male", "1": "female"}
UTK_RACES = {"0": "White", "1": "Black", "2": "Asian", "3": "Indian", "4": "Others"}
APPA_SPLITS = {"train": "train", "valid": "val", "test": "test"}
LAYOUT_HELP = (
    "expected one of: (course) labels.csv with columns file_name,real_age and a final_files/ folder; "
    "(appa) gt_avg_train.csv, gt_avg_valid.csv, gt_avg_test.csv with train/ valid/ test/ folders; "
    "(utkface) image files named <age>_<gender>_<race>_<datetime>.jpg[.chip.jpg]"
)


@dataclass(frozen=True)
class LayoutResult:
    layout: str
    manifest: pd.DataFrame
    problems: pd.DataFrame  # columns: file, reason


def _problems(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["file", "reason"])


def _parse_age(value: object, *, integer: bool) -> tuple[float | None, str | None]:
    """Return (age, None) or (None, reason)."""
    text = str(value).strip()
    try:
        age = float(text)
    except ValueError:
        return None, f"age {text!r} is not a number"
    if not np.isfinite(age):
        return None, f"age {text!r} is not a number"
    if integer and age != int(age):
        return None, f"age {text!r} is not an integer"
    if not MIN_AGE <= age <= MAX_AGE:
        return None, f"age {text!r} is outside {MIN_AGE}-{MAX_AGE}"
    return age, None


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _read_csv(path: Path, required: list[str]) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read as CSV ({exc})") from None
    table.columns = [c.strip() for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(table.columns)}")
    return table


def _labelled_rows(
    table: pd.DataFrame, root: Path, folder: str, age_column: str, *, integer: bool, csv_name: str
) -> tuple[list[dict], list[tuple[str, str]]]:
    """Check each CSV row (age, duplicates, file present) and return good rows and problems."""
    rows: list[dict] = []
    problems: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for line_no, rec in enumerate(table.to_dict("records"), start=2):
        name = rec["file_name"].strip()
        rel = f"{folder}/{name}" if folder else name
        where = f"{csv_name} line {line_no}"
        if not name:
            problems.append((f"{csv_name}:{line_no}", f"{where}: empty file_name"))
            continue
        age, reason = _parse_age(rec[age_column], integer=integer)
        if reason:
            problems.append((rel, f"{where}: {reason}"))
            continue
        if rel in seen:
            problems.append((rel, f"{where}: duplicate row (first at line {seen[rel]})"))
            continue
        seen[rel] = line_no
        if not (root / rel).is_file():
            problems.append((rel, f"{where}: file not found"))
            continue
        rows.append({"file": rel, "age": age, "line": line_no, **{k: v for k, v in rec.items() if k != "file_name"}})
    return rows, problems


def read_course(root: Path) -> LayoutResult:
    """The seed project's layout: labels.csv (file_name,real_age) + final_files/."""
    table = _read_csv(root / "labels.csv", ["file_name", "real_age"])
    rows, problems = _labelled_rows(table, root, "final_files", "real_age", integer=True, csv_name="labels.csv")
    labelled = {r["file"] for r in rows} | {p[0] for p in problems}
    for path in sorted((root / "final_files").iterdir()):
        rel = f"final_files/{path.name}"
        if path.is_file() and rel not in labelled:
            problems.append((rel, "no row in labels.csv"))
    manifest = pd.DataFrame(
        [{"file": r["file"], "age": r["age"], "real_age": r["age"]} for r in rows], columns=MANIFEST_COLUMNS
    )
    return LayoutResult("course", manifest, _problems(problems))


def read_appa(root: Path, target: str) -> LayoutResult:
    """The official APPA-REAL release: gt_avg_{train,valid,test}.csv + train/ valid/ test/.

    The `*_face.jpg` crops are used when present; the official split is kept; `target` picks the
    real or the apparent (average of the raters) age.
    """
    age_column = "real_age" if target == "real" else "apparent_age_avg"
    records: list[dict] = []
    problems: list[tuple[str, str]] = []
    for folder, split in APPA_SPLITS.items():
        csv_name = f"gt_avg_{folder}.csv"
        table = _read_csv(root / csv_name, ["file_name", "apparent_age_avg", "real_age"])
        # Prefer the face crop that APPA-REAL ships beside each photo.
        names = []
        for name in table["file_name"]:
            name = name.strip()
            face = f"{name}_face.jpg"
            names.append(face if (root / folder / face).is_file() else name)
        table = table.assign(file_name=names)
        rows, bad = _labelled_rows(table, root, folder, age_column, integer=(target == "real"), csv_name=csv_name)
        problems += bad
        for r in rows:
            real, why = _parse_age(r["real_age"], integer=True)
            apparent, why2 = _parse_age(r["apparent_age_avg"], integer=False)
            if why or why2:
                problems.append((r["file"], f"{csv_name} line {r['line']}: {why or why2}"))
                continue
            records.append({"file": r["file"], "age": r["age"], "real_age": real, "apparent_age": apparent,
                            "official_split": split})
    return LayoutResult("appa", pd.DataFrame(records, columns=MANIFEST_COLUMNS), _problems(problems))


def read_utkface(root: Path) -> LayoutResult:
    """UTKFace: the age (and gender, race) are in the file name: age_gender_race_datetime.jpg[.chip.jpg]."""
    records: list[dict] = []
    problems: list[tuple[str, str]] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and _is_image_name(p)):
        rel = path.relative_to(root).as_posix()
        fields = path.name.split("_")
        match = UTK_NAME.match(path.name)
        if not match:
            problems.append((rel, "file name does not start with <age>_"))
            continue
        age, reason = _parse_age(match.group(1), integer=True)
        if reason:
            problems.append((rel, f"file name: {reason}"))
            continue
        # A few UTKFace names lack the gender or race field: keep the age, leave those unknown.
        gender = fields[1] if len(fields) > 3 and fields[1] in {"0", "1"} else None
        race = fields[2] if len(fields) > 3 and fields[2] in {"0", "1", "2", "3", "4"} else None
        records.append({"file": rel, "age": age, "real_age": age, "gender": gender, "race": race})
    return LayoutResult("utkface", pd.DataFrame(records, columns=MANIFEST_COLUMNS), _problems(problems))


def detect_layout(root: Path) -> str:
    """Name the layout of `root`, or raise DataError listing what was expected."""
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found; run `make demo` for the demo data or `dvc pull` for the tracked dataset")
    if (root / "labels.csv").is_file() and (root / "final_files").is_dir():
        return "course"
    if all((root / f"gt_avg_{f}.csv").is_file() for f in APPA_SPLITS):
        return "appa"
    if any(UTK_NAME.match(p.name) and _is_image_name(p) for p in root.rglob("*") if p.is_file()):
        return "utkface"
    raise DataError(f"{root}: unknown dataset layout; {LAYOUT_HELP}")


def read_dataset(root: Path, layout: str = "auto", target: str = "real") -> LayoutResult:
    """Read `root` in the given (or detected) layout into a manifest and a list of problems."""
    detected = detect_layout(root) if layout == "auto" else layout
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found; run `make demo` for the demo data or `dvc pull` for the tracked dataset")
    try:
        if detected == "course":
            return read_course(root)
        if detected == "appa":
            return read_appa(root, target)
        if detected == "utkface":
            return read_utkface(root)
    except FileNotFoundError as exc:
        raise DataError(f"{root}: {exc.strerror}: {exc.filename}; {LAYOUT_HELP}") from None
    raise DataError(f"layout {layout!r} is not supported; {LAYOUT_HELP}")
