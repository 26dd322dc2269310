"""Decoding one image: accepted modes are converted to RGB, broken files raise ImageProblem with a reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write_jpeg, write_noise_jpeg
from PIL import Image

from faceage.data.images import ImageProblem, load_face, open_rgb

SIZE = 32


def assert_rgb_face(arr: np.ndarray, size: int = SIZE) -> None:
    assert arr.shape == (size, size, 3)
    assert arr.dtype == np.uint8


def test_valid_jpeg(tmp_path: Path) -> None:
    path = write_jpeg(tmp_path / "a.jpg", size=(40, 40), color=(200, 30, 60))
    arr, info = load_face(path, SIZE)
    assert_rgb_face(arr)
    assert np.abs(arr.astype(int) - (200, 30, 60)).max() <= 6
    assert (info.format, info.mode, info.width, info.height, info.exif_rotated) == ("JPEG", "RGB", 40, 40, False)


@pytest.mark.parametrize("size", [32, 64, 100])
def test_output_size_follows_argument_and_non_square_is_centre_cropped(tmp_path: Path, size: int) -> None:
    img = Image.new("RGB", (90, 30), (0, 0, 255))
    img.paste((255, 0, 0), (30, 0, 60, 30))  # red centre third, blue sides
    path = tmp_path / "wide.png"
    img.save(path)
    arr, info = load_face(path, size)
    assert_rgb_face(arr, size)
    assert (info.width, info.height) == (90, 30)
    # the centre square is the red part only
    assert (arr[:, 1:-1, 0] > 200).all() and (arr[:, 1:-1, 2] < 50).all()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageProblem, match="file not found"):
        load_face(tmp_path / "nope.jpg", SIZE)


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageProblem, match=r"empty file \(0 bytes\)"):
        load_face(path, SIZE)


def test_text_file_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture\n" * 20)
    with pytest.raises(ImageProblem, match="not an image"):
        load_face(path, SIZE)


def test_truncated_jpeg(tmp_path: Path) -> None:
    path = write_noise_jpeg(tmp_path / "full.jpg", size=(120, 120))
    data = path.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    load_face(path, SIZE)  # the full file is fine
    with pytest.raises(ImageProblem, match="truncated"):
        load_face(cut, SIZE)


def test_truncated_inside_header_is_still_an_image_problem(tmp_path: Path) -> None:
    path = write_jpeg(tmp_path / "small.jpg")
    data = path.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[:40])
    with pytest.raises(ImageProblem) as info:
        load_face(cut, SIZE)
    assert str(info.value)  # a reason, not an empty message


def test_grayscale_is_converted(tmp_path: Path) -> None:
    path = tmp_path / "grey.jpg"
    Image.new("L", (40, 40), 128).save(path, format="JPEG")
    arr, info = load_face(path, SIZE)
    assert_rgb_face(arr)
    assert info.mode == "L"
    assert np.abs(arr.astype(int) - 128).max() <= 3
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()


def test_cmyk_jpeg_is_converted(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(path, format="JPEG", quality=95)  # pure red in CMYK
    arr, info = load_face(path, SIZE)
    assert_rgb_face(arr)
    assert info.mode == "CMYK"
    r, g, b = arr[SIZE // 2, SIZE // 2].astype(int)
    assert r > 200 and g < 50 and b < 50


def test_rgba_png_transparent_area_becomes_white(tmp_path: Path) -> None:
    img = Image.new("RGBA", (40, 40), (0, 0, 0, 0))          # fully transparent black
    img.paste((0, 160, 0, 255), (20, 0, 40, 40))             # right half opaque green
    path = tmp_path / "alpha.png"
    img.save(path)
    arr, info = load_face(path, SIZE)
    assert_rgb_face(arr)
    assert info.mode == "RGBA"
    assert (arr[:, : SIZE // 2 - 2] == 255).all()            # transparent -> white, not black
    assert (arr[:, SIZE // 2 + 2 :] == (0, 160, 0)).all()


def test_palette_png_is_converted(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 40), (10, 20, 200)).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    path = tmp_path / "pal.png"
    img.save(path)
    arr, info = load_face(path, SIZE)
    assert_rgb_face(arr)
    assert info.mode == "P"
    assert np.abs(arr.astype(int) - (10, 20, 200)).max() <= 2


def test_palette_png_with_transparency_becomes_white(tmp_path: Path) -> None:
    img = Image.new("P", (40, 40), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.paste(1, (20, 0, 40, 40))  # right half red, left half index 0 (transparent)
    path = tmp_path / "paltr.png"
    img.save(path, transparency=0)
    arr, _ = load_face(path, SIZE)
    assert (arr[:, : SIZE // 2 - 2] == 255).all()
    assert (arr[:, SIZE // 2 + 2 :] == (255, 0, 0)).all()


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # 60x40 landscape: left half red, right half blue; Orientation=6 means "rotate 90 degrees clockwise to view"
    img = Image.new("RGB", (60, 40), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 30, 40))
    exif = img.getexif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    img.save(path, format="JPEG", quality=95, exif=exif.tobytes())

    rgb, info = open_rgb(path)
    assert info.exif_rotated is True
    assert rgb.size == (40, 60)  # now portrait
    full = np.asarray(rgb).astype(int)
    assert full[5, 20, 0] > 200 and full[5, 20, 2] < 60    # red on top
    assert full[-5, 20, 2] > 200 and full[-5, 20, 0] < 60  # blue at the bottom

    arr, info = load_face(path, SIZE)
    assert info.exif_rotated is True
    top, bottom = arr[2, SIZE // 2].astype(int), arr[-3, SIZE // 2].astype(int)
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60
    # left and right columns are the same colour (no left/right split any more)
    assert np.abs(arr[:, 2].astype(int) - arr[:, -3].astype(int)).max() < 30


def test_no_exif_orientation_is_not_rotated(tmp_path: Path) -> None:
    img = Image.new("RGB", (60, 40), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 30, 40))
    path = tmp_path / "plain.jpg"
    img.save(path, format="JPEG", quality=95)
    rgb, info = open_rgb(path)
    assert info.exif_rotated is False
    assert rgb.size == (60, 40)


def test_too_small_image(tmp_path: Path) -> None:
    path = write_jpeg(tmp_path / "tiny.jpg", size=(5, 40))
    with pytest.raises(ImageProblem, match="too small"):
        load_face(path, SIZE)
