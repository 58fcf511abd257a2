"""Images for tests, built by the tests themselves (nothing is checked in): pages with known text, and
awkward and broken files.

The broken ones are what real clients send: phone photos with an EXIF orientation, transparent PNGs,
16-bit scans, truncated uploads, and files whose header declares far more pixels than they hold.
"""

from __future__ import annotations

import io
import re
import struct
import zlib

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def squash(text: str) -> str:
    """PP-OCR drops spaces in Latin text: compare without whitespace, case-insensitively."""
    return re.sub(r"\s+", "", text).upper()


def read_text(result: dict) -> str:
    """One image's lines in the order returned, joined and squashed. Joined rather than compared line by line:
    the detector may legitimately split a rendered line at a word gap ("MEMO RENT" came back as two boxes on
    one CI CPU and as one box here), while the order and every character are still checked."""
    return squash("".join(line["text"] for line in result["lines"]))


def expected_text(lines: list[str]) -> str:
    """What `read_text` should give for an image rendered from `lines`."""
    return squash("".join(lines))


def render_text(lines: list[str], size: int = 36, padding: int = 40, mode: str = "RGB") -> Image.Image:
    """A white page with `lines` in black, drawn with Pillow's built-in TrueType font."""
    font = ImageFont.load_default(size=size)
    widths = [font.getbbox(line)[2] for line in lines]
    line_height = int(size * 1.6)
    width = max(widths) + 2 * padding
    height = line_height * len(lines) + 2 * padding
    page = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(page)
    for i, line in enumerate(lines):
        draw.text((padding, padding + i * line_height), line, fill="black", font=font)
    return page.convert(mode) if mode != "RGB" else page


def encode(image: Image.Image, fmt: str = "PNG", **save_args: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_args)
    return buffer.getvalue()

EXIF_ORIENTATION = 0x0112

# What a camera stores for each orientation tag, given the upright picture: the inverse of the turn
# the viewer applies (6 = "turn 90 degrees clockwise to view", so the sensor data is turned anticlockwise).
_STORED_AS = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
}


def exif_rotated_jpeg(upright: Image.Image, orientation: int) -> bytes:
    """A JPEG whose pixels are stored turned, with the EXIF tag that tells a viewer to turn them back."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    return encode(upright.transpose(_STORED_AS[orientation]), "JPEG", quality=95, exif=exif.tobytes())


def transparent_text_png(upright: Image.Image) -> bytes:
    """Black text on a fully transparent *black* background: dropping alpha instead of compositing it
    on white would give a black page with no visible text."""
    gray = np.asarray(upright.convert("L"))
    rgba = np.zeros((*gray.shape, 4), dtype=np.uint8)
    rgba[:, :, 3] = 255 - gray  # ink is opaque, paper is transparent
    return encode(Image.fromarray(rgba, "RGBA"))


def sixteen_bit_png(upright: Image.Image) -> bytes:
    """A 16-bit grayscale PNG (mode I;16), as scanners write: values 0..65535."""
    gray16 = np.asarray(upright.convert("L")).astype(np.uint16) * 257
    return encode(Image.fromarray(gray16))


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_declaring(width: int, height: int) -> bytes:
    """A PNG of a few hundred bytes whose header declares width x height pixels: a decompression bomb.

    Its pixel data is one row, so decoding it would fail as truncated: a server that answers "too
    large" rather than "corrupt" refused it from the header alone.
    """
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1))) + _png_chunk(b"IEND", b""))


def real_png_bomb(width: int = 10_000, height: int = 5_000) -> bytes:
    """A genuine, fully decodable bilevel PNG of 50 megapixels that compresses to ~16 KB."""
    return encode(Image.new("1", (width, height), 1))


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: int(len(data) * keep)]


def jpeg_with_broken_huffman_table(data: bytes) -> bytes:
    """A JPEG whose first Huffman table (DHT segment) is overwritten: the header reads, the scan does not."""
    start = data.index(b"\xff\xc4") + 5
    return data[:start] + b"\xff" * 20 + data[start + 20:]


def png_with_broken_data(data: bytes) -> bytes:
    """A PNG with a flipped byte inside its compressed pixel data."""
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]


# Digits PP-OCRv4 reads without hesitation in Pillow's default font: its 7 is sometimes read as "/",
# and 0 and 7 also come out wrong when they end a line, so neither is used.
_SAFE_DIGITS = "12345689"


def _safe_number(value: int, digits: int) -> str:
    out = ""
    for _ in range(digits):
        out = _SAFE_DIGITS[value % len(_SAFE_DIGITS)] + out
        value //= len(_SAFE_DIGITS)
    return out


def receipt_lines(index: int) -> list[str]:
    """Two lines of text that differ for every `index` < 32768: concurrent requests each get their own,
    so an answer sent to the wrong request would be caught."""
    return [f"RECEIPT {_safe_number(3001 + 97 * index, 5)}",
            f"CASH PAID {_safe_number(11 + 5 * index, 2)}.{_safe_number(3 * index + 1, 2)}"]
