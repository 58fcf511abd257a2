"""Golden sets: images with known text that a version must read well enough before it serves.

Format: a directory of pairs `NAME.png` (or `.jpg` / `.jpeg`) + `NAME.txt`, the expected text as UTF-8,
one printed line per text line; optionally `NAME.fields.json`, the fields the image should give
(`server.quality.expected_fields`). The gate scores a version by CER (`server.quality.textmetrics`:
case-folded, whitespace removed), so line breaks and spacing in the `.txt` do not matter; the
characters and their order do.

A version's own `<version>/golden/` wins over the repository's `<model_repo>/golden/` (written by
`ocr-server models install-golden`, see `server.quality.receipts`). With neither, a small built-in set
of receipt lines rendered with Pillow's built-in font is used, so that a version that reads garbage
(wrong dictionary, broken weights) is caught even on a bare repository; the API names the set used.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from server.documents.decode import decode_image
from server.documents.errors import DecodeError
from server.quality.expected_fields import SUFFIX as FIELDS_SUFFIX
from server.quality.expected_fields import ExpectedFields, read_expected_fields
from server.repository.layout import GOLDEN_DIR

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
BUILTIN = "builtin"
MAX_GOLDEN_PIXELS = 40_000_000
BUILTIN_PAGES = (
    ("RECEIPT NO 2026-0415", "CASH PAYMENT RECEIVED", "SUBTOTAL 41.90"),
    ("TOTAL DUE 45.27", "THANK YOU FOR YOUR PURCHASE"),
)


class GoldenSetError(ValueError):
    """The golden set cannot be used as it is; the message says what to fix."""


@dataclass(frozen=True)
class GoldenSample:
    name: str
    image: np.ndarray  # BGR uint8
    text: str
    expected_fields: ExpectedFields | None = None


@dataclass(frozen=True)
class GoldenSet:
    source: str  # the directory, or "builtin"
    key: str  # changes when the set changes (for caching a live version's score)
    samples: tuple[GoldenSample, ...]


def load_golden_set(directory: Path) -> list[GoldenSample]:
    """The decoded pairs of `directory`, sorted by name. Unpaired images or texts, unreadable images
    and an empty set are errors: a gate that silently checks less than ops think is worse than one
    that refuses."""
    directory = Path(directory)
    files = {p.name: p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")}
    images = sorted(p for p in files.values() if p.suffix.lower() in IMAGE_SUFFIXES)
    texts = {p.stem for p in files.values() if p.suffix == ".txt"}
    unpaired_texts = sorted(texts - {p.stem for p in images})
    if unpaired_texts:
        raise GoldenSetError(f"{directory}: {', '.join(t + '.txt' for t in unpaired_texts)} without an image")
    try:
        expected = read_expected_fields(directory)
    except ValueError as exc:
        raise GoldenSetError(str(exc)) from exc
    unpaired_fields = sorted(set(expected) - {p.stem for p in images})
    if unpaired_fields:
        raise GoldenSetError(f"{directory}: {', '.join(n + FIELDS_SUFFIX for n in unpaired_fields)} without an image")
    samples = []
    for image_path in images:
        text_path = image_path.with_suffix(".txt")
        if not text_path.is_file():
            raise GoldenSetError(f"{directory}: {image_path.name} has no {text_path.name}")
        try:
            image = decode_image(image_path.read_bytes(), MAX_GOLDEN_PIXELS)
        except DecodeError as exc:
            raise GoldenSetError(f"{image_path}: {exc.message}") from exc
        try:
            text = text_path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise GoldenSetError(f"{text_path} is not UTF-8") from exc
        samples.append(GoldenSample(image_path.stem, image, text, expected.get(image_path.stem)))
    if not samples:
        raise GoldenSetError(f"{directory} holds no NAME.png/.jpg + NAME.txt pairs")
    return samples


def builtin_golden_set() -> list[GoldenSample]:
    """Receipt lines rendered with Pillow's built-in TrueType font (no font files needed)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=36)
    samples = []
    for index, lines in enumerate(BUILTIN_PAGES):
        width = max(int(font.getlength(line)) for line in lines) + 80
        page = Image.new("RGB", (width, 58 * len(lines) + 80), "white")
        draw = ImageDraw.Draw(page)
        for row, line in enumerate(lines):
            draw.text((40, 40 + row * 58), line, fill="black", font=font)
        samples.append(GoldenSample(f"builtin-{index}", np.asarray(page)[:, :, ::-1].copy(), "\n".join(lines)))
    return samples


def _directory_key(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(directory.iterdir()):
        info = path.stat()
        digest.update(f"{path.name}\0{info.st_size}\0{info.st_mtime_ns}\0{info.st_ino}\n".encode())
    return f"{directory.resolve()}:{digest.hexdigest()[:16]}"


def resolve_golden_set(version_dir: Path, repo_root: Path) -> GoldenSet:
    """The version's own golden set, else the repository's, else the built-in one."""
    for directory in (version_dir / GOLDEN_DIR, repo_root / GOLDEN_DIR):
        if directory.is_dir():
            try:
                key = _directory_key(directory)
                return GoldenSet(str(directory), key, tuple(load_golden_set(directory)))
            except OSError as exc:
                raise GoldenSetError(f"cannot read {directory}: {exc.strerror or exc}") from exc
    return GoldenSet(BUILTIN, BUILTIN, tuple(builtin_golden_set()))
