"""Stage `prepare`: raw faces -> validated manifest, quarantine report, seeded split, cached arrays, EDA.

Reads params section `prepare`; writes results/prepare/. Raw data is only read, never modified.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from tqdm import tqdm

from faceage import figures
from faceage.ages import age_group
from faceage.config import PrepareConfig
from faceage.data.images import ImageInfo, ImageProblem, load_face
from faceage.data.layouts import read_dataset
from faceage.data.prepared import save_prepared
from faceage.data.split import SPLITS, assign_split
from faceage.errors import DataError

OUT_DIR = Path("results/prepare")


@dataclass(frozen=True)
class DecodedImages:
    images: np.ndarray          # uint8 (n_ok, S, S, 3)
    ok: np.ndarray              # bool mask over the input files
    infos: list[ImageInfo | None]
    problems: list[tuple[str, str]]


def decode_all(root: Path, files: list[str], size: int, progress: bool = True) -> DecodedImages:
    """Decode every file once (threads: Pillow releases the GIL while decoding), keeping failures."""
    def work(rel: str) -> tuple[np.ndarray | None, ImageInfo | str]:
        try:
            return load_face(root / rel, size)
        except ImageProblem as exc:
            return None, str(exc)

    images = np.zeros((len(files), size, size, 3), dtype=np.uint8)
    ok = np.zeros(len(files), dtype=bool)
    infos: list[ImageInfo | None] = [None] * len(files)
    problems: list[tuple[str, str]] = []
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        results = pool.map(work, files, chunksize=16)
        for i, (array, info) in enumerate(tqdm(results, total=len(files), desc="decode", unit="img", disable=not progress)):
            if array is None:
                problems.append((files[i], str(info)))
            else:
                images[i], ok[i], infos[i] = array, True, info  # type: ignore[assignment]
    return DecodedImages(images[ok], ok, infos, problems)


def data_source(data_dir: Path) -> dict[str, str | None]:
    """Where the data came from: the folder and, when DVC tracks it, the md5 recorded in <folder>.dvc."""
    dvc_file = data_dir.with_name(data_dir.name + ".dvc")
    md5 = None
    if dvc_file.is_file():
        outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs") or [{}]
        md5 = outs[0].get("md5")
    return {"data_dir": str(data_dir), "data_md5": md5}


def write_quarantine(problems: list[tuple[str, str]], out_dir: Path) -> Path:
    path = out_dir / "quarantine.csv"
    pd.DataFrame(problems, columns=["file", "reason"]).sort_values("file", kind="stable").to_csv(path, index=False)
    return path


def run_prepare(cfg: PrepareConfig, out_dir: Path = OUT_DIR, progress: bool = True) -> dict:
    """Run the whole stage; return the report (also written to out_dir/report.json)."""
    root = Path(cfg.data_dir)
    layout = read_dataset(root, cfg.layout, cfg.target)
    manifest = layout.manifest.sort_values("file", kind="stable").reset_index(drop=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    decoded = decode_all(root, manifest["file"].tolist(), cfg.image_size, progress)
    problems = list(map(tuple, layout.problems.itertuples(index=False))) + decoded.problems
    quarantine_path = write_quarantine(problems, out_dir)

    n_rows = len(manifest) + len(layout.problems)
    bad_fraction = len(problems) / n_rows if n_rows else 1.0
    if bad_fraction > cfg.max_bad_fraction or not decoded.ok.any():
        raise DataError(
            f"{len(problems)} of {n_rows} rows in {root} ({bad_fraction:.1%}) are unusable, more than "
            f"prepare.max_bad_fraction={cfg.max_bad_fraction:g}; the reasons are in {quarantine_path} "
            "(raw data untouched, nothing else written)"
        )

    good = manifest[decoded.ok].reset_index(drop=True)
    info = pd.DataFrame([asdict(i) for i in decoded.infos if i is not None])
    good = pd.concat([good, info], axis=1)
    good["split"] = assign_split(good, cfg.val_fraction, cfg.test_fraction, cfg.seed).to_numpy()
    good["group"] = age_group(good["age"].to_numpy())
    good.insert(0, "index", np.arange(len(good)))
    save_prepared(out_dir, decoded.images, good)

    eda = out_dir / "eda"
    figures.age_histogram(good, eda / "age_histogram.png")
    figures.group_counts(good, eda / "age_groups.png")
    figures.sample_grid(decoded.images, good["age"].to_numpy(), eda / "sample_faces.png", seed=cfg.seed)
    figures.image_sizes(good, eda / "image_sizes.png")

    report = {
        "layout": layout.layout,
        "n_rows": n_rows,
        "n_images": int(len(good)),
        "n_quarantined": len(problems),
        "bad_fraction": round(bad_fraction, 6),
        "n_converted_to_rgb": int((good["mode"] != "RGB").sum()),
        "n_exif_rotated": int(good["exif_rotated"].sum()),
        "split": {s: int((good["split"] == s).sum()) for s in SPLITS},
        "age": {"min": float(good["age"].min()), "median": float(good["age"].median()),
                "mean": round(float(good["age"].mean()), 3), "max": float(good["age"].max())},
        "image_size": cfg.image_size,
        **data_source(root),
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
