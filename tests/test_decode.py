"""server.documents.decode: every accepted format and pixel mode becomes the right upright BGR image; every broken
or oversized file becomes the right 4xx error (no server needed)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from server.documents.decode import decode_image, open_image, to_bgr
from server.documents.errors import DecodeError
from tests.support.images import (
    encode,
    exif_rotated_jpeg,
    jpeg_with_broken_huffman_table,
    png_declaring,
    png_with_broken_data,
    real_png_bomb,
    render_text,
    sixteen_bit_png,
    transparent_text_png,
    truncated,
)

LIMIT = 40_000_000


@pytest.fixture(scope="module")
def page() -> Image.Image:
    return render_text(["ACCOUNT 5521", "PAYEE ACME LTD"])


def _bgr_of(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))[:, :, ::-1]


def _error(data: bytes, max_pixels: int = LIMIT) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        decode_image(data, max_pixels)
    return caught.value


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "PPM", "GIF", "WEBP"])
def test_lossless_formats_decode_exactly(page: Image.Image, fmt: str) -> None:
    args = {"lossless": True} if fmt == "WEBP" else {}
    out = decode_image(encode(page, fmt, **args), LIMIT)
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, _bgr_of(page))


def test_jpeg_decodes_to_bgr(page: Image.Image) -> None:
    # A coloured page checks the channel order: JPEG is lossy, so compare with a tolerance.
    coloured = Image.new("RGB", (64, 32), (200, 30, 10))
    out = decode_image(encode(coloured, "JPEG", quality=95), LIMIT)
    assert out.shape == (32, 64, 3)
    assert np.abs(out[16, 32].astype(int) - [10, 30, 200]).max() <= 6


@pytest.mark.parametrize("mode", ["L", "1", "P", "CMYK", "LA"])
def test_other_modes_become_rgb(page: Image.Image, mode: str) -> None:
    source = page.convert("L").point(lambda v: 255 if v > 128 else 0) if mode == "1" else page
    image = source.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    out = decode_image(encode(image, fmt), LIMIT)
    assert out.shape == (page.height, page.width, 3)
    mean_error = np.abs(out.astype(int) - _bgr_of(image).astype(int)).mean()
    assert mean_error <= (3.0 if fmt == "JPEG" else 0.0)  # JPEG is lossy; PNG must be exact


def test_transparency_is_composited_on_white(page: Image.Image) -> None:
    out = decode_image(transparent_text_png(page), LIMIT)
    gray = np.asarray(page.convert("L")).astype(int)
    # Transparent paper reads as white, opaque ink as black: the page is recovered, not a black square.
    assert np.abs(out[:, :, 0].astype(int) - gray).max() <= 1
    assert (out == 255).mean() > 0.8


def test_palette_transparency_is_composited_on_white() -> None:
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0] + [255, 0, 0] * 255)
    image.info["transparency"] = 0  # index 0 (black) is transparent
    image.putpixel((3, 3), 1)
    out = decode_image(encode(image), LIMIT)
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[3, 3].tolist() == [0, 0, 255]  # red, in BGR


def test_sixteen_bit_is_scaled_not_clipped(page: Image.Image) -> None:
    data = sixteen_bit_png(page)
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    out = decode_image(data, LIMIT)
    np.testing.assert_array_equal(out[:, :, 0], np.asarray(page.convert("L")))


def test_float_image_is_stretched_to_full_range() -> None:
    values = np.linspace(-1.0, 3.0, 64, dtype=np.float32).reshape(8, 8)
    out = decode_image(encode(Image.fromarray(values, "F"), "TIFF"), LIMIT)
    assert out.min() == 0 and out.max() == 255


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied(page: Image.Image, orientation: int) -> None:
    data = exif_rotated_jpeg(page, orientation)
    stored = Image.open(io.BytesIO(data)).size
    if orientation != 3:
        assert stored == (page.height, page.width)  # the file really is stored sideways
    out = decode_image(data, LIMIT)
    assert out.shape[:2] == (page.height, page.width)
    # JPEG noise aside, the result is the upright page (a wrong turn would differ almost everywhere).
    assert np.abs(out.astype(int) - _bgr_of(page).astype(int)).mean() < 4


def test_one_pixel_image() -> None:
    out = decode_image(encode(Image.new("RGB", (1, 1), (1, 2, 3))), LIMIT)
    assert out.tolist() == [[[3, 2, 1]]]


def test_header_declaring_too_many_pixels_is_refused_before_decoding() -> None:
    data = png_declaring(100_000, 100_000)
    assert len(data) < 1000
    with pytest.raises(DecodeError) as caught:
        open_image(data, LIMIT)  # the header alone is enough
    err = caught.value
    assert (err.status, err.code) == (413, "image_too_large")
    assert err.details == {"width": 100_000, "height": 100_000, "max_pixels": LIMIT}


def test_real_bomb_is_refused() -> None:
    data = real_png_bomb()
    assert len(data) < 50_000
    err = _error(data)
    assert (err.status, err.code) == (413, "image_too_large")


def test_pixel_limit_is_inclusive() -> None:
    data = encode(Image.new("L", (100, 100)))
    assert decode_image(data, 10_000).shape == (100, 100, 3)
    assert _error(data, 9_999).code == "image_too_large"


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("empty", 400, "empty_image"),
        ("text", 422, "invalid_image"),
        ("pdf", 415, "unsupported_image_format"),
        ("ico", 415, "unsupported_image_format"),
        ("truncated_jpeg", 422, "corrupt_image"),
        ("truncated_png", 422, "corrupt_image"),
        ("broken_jpeg", 422, "corrupt_image"),
        ("broken_png", 422, "corrupt_image"),
    ],
)
def test_bad_data_is_a_clear_error(page: Image.Image, name: str, status: int, code: str) -> None:
    jpeg, png = encode(page, "JPEG"), encode(page, "PNG")
    data = {
        "empty": b"",
        "text": b"hello, this is not an image",
        "pdf": b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
        "ico": encode(Image.new("RGB", (16, 16)), "ICO"),
        "truncated_jpeg": truncated(jpeg),
        "truncated_png": truncated(png),
        "broken_jpeg": jpeg_with_broken_huffman_table(jpeg),
        "broken_png": png_with_broken_data(png),
    }[name]
    err = _error(data)
    assert (err.status, err.code) == (status, code), err.message


def test_to_bgr_frees_the_decoded_image(page: Image.Image) -> None:
    image = open_image(encode(page), LIMIT)
    to_bgr(image)
    with pytest.raises(ValueError):
        image.load()  # closed: its pixels are no longer held
