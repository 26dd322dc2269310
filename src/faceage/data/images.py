"""Decoding and checking one image, the same way for prepare, evaluate and predict.

`load_face` returns a square uint8 RGB array of the model's input size: EXIF orientation applied,
grayscale/CMYK/RGBA/palette converted to RGB, centre-cropped to a square, resized. Anything that cannot
be used raises ImageProblem with a reason a person can act on.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Refuse absurd images (decompression bombs) with a clear reason instead of a PIL warning.
MAX_PIXELS = 50_000_000


class ImageProblem(Exception):
    """This one image cannot be used; str(exc) is the reason."""


@dataclass(frozen=True)
class ImageInfo:
    format: str
    mode: str
    width: int
    height: int
    exif_rotated: bool


def open_rgb(source: Path | bytes, draft_size: int | None = None) -> tuple[Image.Image, ImageInfo]:
    """Open, fully decode and normalise an image (a file or its bytes) to RGB with EXIF orientation applied."""
    if isinstance(source, bytes):
        if not source:
            raise ImageProblem("empty image (0 bytes)")
        stream: Path | io.BytesIO = io.BytesIO(source)
    else:
        if not source.is_file():
            raise ImageProblem("file not found")
        if source.stat().st_size == 0:
            raise ImageProblem("empty file (0 bytes)")
        stream = source
    try:
        img = Image.open(stream)
    except UnidentifiedImageError:
        raise ImageProblem("not an image (unrecognised format)") from None
    except OSError as exc:
        raise ImageProblem(f"truncated or corrupt image (cannot open: {exc})") from None
    with img:
        fmt, mode, (width, height) = img.format or "?", img.mode, img.size
        if width * height > MAX_PIXELS:
            raise ImageProblem(f"too large ({width}x{height} pixels)")
        if draft_size and fmt == "JPEG":
            # Let libjpeg decode at a reduced scale (1/2, 1/4, 1/8) that still covers the target size.
            img.draft("RGB", (draft_size, draft_size))
        try:
            img.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageProblem(f"truncated or corrupt image data ({exc})") from None
        orientation = img.getexif().get(0x0112, 1)
        img = ImageOps.exif_transpose(img)
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            # Flatten transparency on white rather than on black (what a printed photo would look like).
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, rgba)
        rgb = img.convert("RGB")
    return rgb, ImageInfo(fmt, mode, width, height, orientation not in (1, None))


def to_square_array(img: Image.Image, size: int) -> np.ndarray:
    """Centre-crop to a square and resize to size x size; uint8 HxWx3."""
    square = ImageOps.fit(img, (size, size), method=Image.Resampling.BILINEAR, centering=(0.5, 0.5))
    return np.asarray(square, dtype=np.uint8)


def load_face(path: Path, size: int) -> tuple[np.ndarray, ImageInfo]:
    """Decode `path` to a size x size RGB uint8 array, or raise ImageProblem."""
    img, info = open_rgb(path, draft_size=size)
    if min(img.size) < 8:
        raise ImageProblem(f"too small ({img.size[0]}x{img.size[1]} pixels)")
    return to_square_array(img, size), info
