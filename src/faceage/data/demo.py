"""A deterministic generator of a small SYNTHETIC face-like dataset in the course layout.

It is not real data: it exists so that `make demo` and the tests run offline on a dataset whose ages
are learnable. Age visibly drives the picture (as it does on real faces): children have rounder faces,
larger eyes set lower and no wrinkles; from the mid-twenties forehead lines and crow's feet appear and
deepen; hair greys after about 35 and the hairline recedes after about 50. Skin tone, hair colour,
background, pose and lighting vary at random and carry no age signal.

Ages follow the shape described for ChaLearn APPA-REAL (ages 1-100, most faces 20-30, median ~29,
heaped at round ages), so age-group code paths see realistic counts.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

DEMO_SIZE = 96
DEMO_COUNT = 1200
DEMO_SEED = 20261204

SKIN_TONES = [(255, 224, 196), (241, 194, 157), (224, 172, 130), (198, 134, 90), (141, 85, 54), (92, 58, 38)]
HAIR_COLOURS = [(25, 20, 18), (70, 45, 28), (120, 80, 40), (200, 160, 90), (150, 60, 30)]


def sample_ages(n: int, rng: np.random.Generator) -> np.ndarray:
    """APPA-REAL-like ages: a log-normal bulk around 29, some children, heaping at round ages."""
    bulk = np.exp(rng.normal(np.log(30.0), 0.45, size=n))
    kids = rng.uniform(1, 16, size=n)
    ages = np.where(rng.random(n) < 0.1, kids, bulk)
    ages = np.clip(np.rint(ages), 1, 100)
    heap = (rng.random(n) < 0.15) & (ages >= 25)
    ages[heap] = np.clip(np.rint(ages[heap] / 10) * 10, 1, 100)
    return ages.astype(int)


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    t = float(np.clip(t, 0.0, 1.0))
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))  # type: ignore[return-value]


def draw_face(age: int, rng: np.random.Generator, size: int = DEMO_SIZE) -> Image.Image:
    """Draw one synthetic face of the given age."""
    s = 4 * size  # draw large, then downsample (anti-aliasing)
    background = tuple(int(v) for v in rng.integers(60, 230, size=3))
    img = Image.new("RGB", (s, s), background)
    d = ImageDraw.Draw(img)
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))]
    hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))]
    youth = float(np.clip((18 - age) / 17, 0, 1))         # 1 for babies, 0 from 18
    wrinkle = float(np.clip((age - 25) / 50, 0, 1))       # 0 until 25, 1 at 75
    grey = float(np.clip((age - 35) / 35, 0, 1))          # 0 until 35, 1 at 70
    recede = float(np.clip((age - 50) / 30, 0, 1))        # 0 until 50
    cx = s / 2 + rng.normal(0, s * 0.02)
    cy = s / 2 + rng.normal(0, s * 0.02)
    half_w = s * (0.30 + 0.04 * youth) * rng.uniform(0.95, 1.05)
    half_h = s * (0.40 - 0.05 * youth) * rng.uniform(0.95, 1.05)
    hair_colour = _mix(hair, (215, 215, 215), grey)
    # Hair: a cap above the face, lower (more hair) when young, receding with age.
    top = cy - half_h - s * 0.06
    d.ellipse([cx - half_w * 1.08, top, cx + half_w * 1.08, cy + half_h * 0.2], fill=hair_colour)
    d.ellipse([cx - half_w, cy - half_h, cx + half_w, cy + half_h], fill=skin)
    hairline = cy - half_h * (0.55 - 0.35 * recede)
    d.chord([cx - half_w, cy - half_h * 1.05, cx + half_w, hairline + (hairline - cy + half_h) * 0.6],
            180, 360, fill=hair_colour)
    # Eyes: larger and lower in children.
    eye_y = cy + half_h * (0.05 + 0.12 * youth) - half_h * 0.1
    eye_dx = half_w * 0.42
    eye_r = s * (0.035 + 0.02 * youth)
    line = _mix(skin, (40, 25, 20), 0.35 + 0.4 * wrinkle)
    for side in (-1, 1):
        ex = cx + side * eye_dx
        d.ellipse([ex - eye_r * 1.5, eye_y - eye_r, ex + eye_r * 1.5, eye_y + eye_r], fill=(245, 245, 245))
        d.ellipse([ex - eye_r * 0.7, eye_y - eye_r * 0.7, ex + eye_r * 0.7, eye_y + eye_r * 0.7], fill=(50, 35, 25))
        # Crow's feet and eye bags with age.
        for k in range(int(round(3 * wrinkle))):
            ang = (k - 1) * 0.35
            x0 = ex + side * eye_r * 1.7
            d.line([x0, eye_y + ang * eye_r, x0 + side * eye_r * 1.2, eye_y + ang * eye_r * 2.2], fill=line, width=max(1, s // 160))
        if wrinkle > 0.2:
            d.arc([ex - eye_r * 1.4, eye_y, ex + eye_r * 1.4, eye_y + eye_r * 2.2], 20, 160, fill=line, width=max(1, s // 160))
    # Forehead lines: 0 at 25, up to 4 at 75.
    for k in range(int(round(4 * wrinkle))):
        y = eye_y - half_h * (0.35 + 0.1 * k)
        d.arc([cx - half_w * 0.55, y - s * 0.02, cx + half_w * 0.55, y + s * 0.02], 200, 340, fill=line, width=max(1, s // 120))
    # Nose, mouth and nasolabial folds.
    d.line([cx, eye_y + eye_r, cx - s * 0.015, cy + half_h * 0.3], fill=line, width=max(1, s // 140))
    mouth_y = cy + half_h * (0.55 - 0.08 * youth)
    d.arc([cx - half_w * 0.35, mouth_y - s * 0.04, cx + half_w * 0.35, mouth_y + s * 0.03], 20, 160,
          fill=(150, 60, 60), width=max(2, s // 80))
    if wrinkle > 0.3:
        for side in (-1, 1):
            d.line([cx + side * half_w * 0.3, cy + half_h * 0.15, cx + side * half_w * 0.42, mouth_y + s * 0.02],
                   fill=line, width=max(1, s // 140))
    img = img.rotate(float(rng.normal(0, 6)), resample=Image.Resampling.BILINEAR, fillcolor=background)
    img = img.resize((size, size), Image.Resampling.LANCZOS)
    # Lighting: a random global gain and a little sensor noise.
    arr = np.asarray(img, dtype=np.float32) * rng.uniform(0.8, 1.15)
    arr += rng.normal(0, 4, size=arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).filter(ImageFilter.SMOOTH)


def generate_demo(root: Path, n: int = DEMO_COUNT, seed: int = DEMO_SEED, size: int = DEMO_SIZE,
                  progress: bool = True) -> int:
    """Write `n` synthetic faces to root/final_files and their ages to root/labels.csv (course layout).

    The output is byte-for-byte deterministic for a given (n, seed, size) and Pillow version, so the
    `data.dvc` committed in git matches what a fresh machine generates.
    """
    rng = np.random.default_rng(seed)
    ages = sample_ages(n, rng)
    images = root / "final_files"
    images.mkdir(parents=True, exist_ok=True)
    with open(root / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["file_name", "real_age"])
        for i, age in enumerate(tqdm(ages, desc="demo faces", unit="img", disable=not progress)):
            name = f"{i:06d}.jpg"
            face_rng = np.random.default_rng([seed, i])
            draw_face(int(age), face_rng, size).save(images / name, format="JPEG", quality=90)
            writer.writerow([name, int(age)])
    return n
