"""What the benchmark scripts share: where the real faces are, a seeded subset of them, and the untrained tiny
model their smoke modes score."""

from __future__ import annotations

import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Callable, NoReturn

import numpy as np

# The shared UTKFace sample, read in place (licence: non-commercial research; never copied into the project).
UTKFACE_IMAGES = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "utkface-sample" / "images").resolve()


VECTOR_FLAGS = frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile"})


def add_set_option(ap, example: str = "train.head=dex") -> None:
    """`--set KEY=VALUE` (repeatable): one params.yaml value changed for this run, written as YAML."""
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help=f"override a param (YAML value), e.g. --set {example}")


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """The params mapping with the --set values in (dotted keys: train.augment.erase=0.5); faceage.config then
    checks it like params.yaml, so a wrong key or value is refused with the key named."""
    import yaml

    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --set {item!r}: expected KEY=VALUE, e.g. train.batch_size=128")
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return raw


def load_params_with(path: Path, overrides: list[str]):
    """params.yaml (or `path`) parsed once, with the --set overrides applied."""
    import yaml

    from faceage.config import parse_params

    return parse_params(apply_overrides(yaml.safe_load(path.read_text()), overrides))


def machine_summary() -> str:
    """The machine a figure was measured on, e.g. "x86_64, 2 cores, avx2" (ResNet50 trains 8x slower on AVX2
    than on AVX-512 here, so a figure without it cannot be compared)."""
    from faceage.hardware import cpu_flags

    vector = " ".join(sorted(cpu_flags() & VECTOR_FLAGS)) or "no AVX2"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {vector}"


def subset_dir(images: Path, n: int, seed: int) -> Path:
    """A temporary folder of symbolic links to n of the faces (the files themselves stay where they are)."""
    files = sorted(p for p in images.iterdir() if p.suffix.lower() == ".jpg")
    pick = np.random.default_rng(seed).choice(len(files), size=min(n, len(files)), replace=False)
    tmp = Path(tempfile.mkdtemp(prefix="faceage-utk-"))
    for i in sorted(pick):
        (tmp / files[i].name).symlink_to(files[i])
    return tmp


def images_found(images: Path) -> bool:
    """True when the UTKFace folder is there; otherwise says so on stderr (the caller exits with status 2)."""
    if images.is_dir():
        return True
    print(f"error: {images}: UTKFace sample not found (expected ../shared/data/utkface-sample/images)", file=sys.stderr)
    return False


def untrained_tiny_model(train_ages: np.ndarray, image_size: int = 32):
    """A seeded, untrained tiny_cnn model without augmentation: what the --tiny modes score (figures mean nothing)."""
    import keras

    from faceage.config import AugmentConfig, TrainConfig
    from faceage.model import build_model

    keras.utils.set_random_seed(0)
    cfg = TrainConfig(backbone="tiny_cnn", augment=AugmentConfig.off())
    return build_model(cfg, image_size, train_ages)


def run_main(main: Callable[[], int]) -> NoReturn:
    """Run a benchmark's main(); a user-facing error (bad params, missing or mismatched predictions) becomes one
    line on stderr and exit status 2, as in the faceage CLI, instead of a traceback."""
    from faceage.errors import FaceageError

    try:
        code = main()
    except FaceageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code)
