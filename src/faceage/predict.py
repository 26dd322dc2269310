"""Ages for photos at the checkout: files, folders or globs in, one row per face out.

Per-file problems (missing, not an image, unreadable, no face) become rows with a reason and the other files
go on. The ID-check decision is the rule calibrated by evaluate (results/evaluate/policy.json), the same one
the served model applies.
"""

from __future__ import annotations

import glob
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from faceage.ages import age_group
from faceage.config import PredictConfig
from faceage.data.images import ImageProblem, open_rgb
from faceage.data.layouts import IMAGE_SUFFIXES
from faceage.faces import Face, find_faces
from faceage.policy import Policy

GLOB_CHARS = set("*?[")


@dataclass
class FaceRow:
    file: str
    face: int | None = None
    box: str = ""
    age: float | None = None
    group: str = ""
    ask_id: bool | None = None
    p_minor: float | None = None     # dex or gaussian head: the chance of being under the legal age
    status: str = "ok"
    reason: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def expand_inputs(inputs: list[str]) -> tuple[list[Path], list[FaceRow]]:
    """Files, folders (searched recursively for images) and globs -> files; unmatched inputs -> error rows."""
    files: list[Path] = []
    missing: list[FaceRow] = []
    for item in inputs:
        path = Path(item)
        if GLOB_CHARS & set(item):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            files += matches
            if not matches:
                missing.append(FaceRow(item, status="error", reason="no file matches this pattern"))
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            files += found
            if not found:
                missing.append(FaceRow(item, status="error", reason="folder holds no image files"))
        else:
            files.append(path)  # a missing file is reported by open_rgb with its reason
    return files, missing


def faces_of_photo(source: Path | bytes, size: int, cfg: PredictConfig, all_faces: bool) -> tuple[list[Face], str]:
    """The faces to score in one photo and a note (e.g. several faces found); raises ImageProblem."""
    # Without detection the photo is decoded exactly as the prepare stage decodes training images
    # (JPEG draft scaling included), so served and evaluated ages agree.
    img, _ = open_rgb(source, draft_size=None if cfg.detect else size)
    faces = find_faces(img, size, detect=cfg.detect, margin=cfg.margin, min_face=cfg.min_face)
    if not faces:
        raise ImageProblem("no face found")
    note = ""
    if len(faces) > 1 and not all_faces:
        note = f"{len(faces)} faces found; the largest is used (--all-faces for all)"
        faces = faces[:1]
    return faces, note


def predict_files(files: list[Path], model, policy: Policy, cfg: PredictConfig, all_faces: bool = False,
                  tta_flip: bool = False) -> list[FaceRow]:
    """One row per face (or per failed file), in input order. The model is called once, batched."""
    from faceage.inference import estimate, input_size

    size = input_size(model)
    rows: list[FaceRow] = []
    pixels: list[np.ndarray] = []
    for path in files:
        try:
            faces, note = faces_of_photo(path, size, cfg, all_faces)
        except ImageProblem as exc:
            rows.append(FaceRow(str(path), status="error", reason=str(exc)))
            continue
        for i, face in enumerate(faces):
            rows.append(FaceRow(str(path), face=i, box=",".join(map(str, face.box)), reason=note))
            pixels.append(face.pixels)
    if pixels:
        est = estimate(model, np.stack(pixels), tta_flip=tta_flip)
        asked = policy.ask(est)
        p_minor = est.p_under(policy.legal_age)
        scored = [r for r in rows if r.status == "ok"]
        for i, (row, age) in enumerate(zip(scored, est.ages)):
            row.age = round(float(age), 1)
            row.group = str(age_group(float(age)))
            row.ask_id = bool(asked[i])
            row.p_minor = None if p_minor is None else round(float(p_minor[i]), 4)
    return rows
