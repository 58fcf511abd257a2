"""Golden sets: images with known text that a version must read well enough before it serves.

Format (shared with the quality gate): a directory of pairs `NAME.png` (or `.jpg` / `.jpeg`) and
`NAME.txt`, the text as UTF-8, one printed line per text line. The gate scores a version by CER
(total edits / total reference characters, with `server.quality.textmetrics`: case-folded, whitespace
removed), so line breaks and spacing in the `.txt` do not matter, the characters and their order do.

The repository-level set lives in `<model_repo>/golden/`, a version's own in `<version>/golden/`.
`ocr-server models install-golden` writes the default one (see `server.quality.receipts`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GOLDEN_DIR = "golden"


class GoldenSetError(ValueError):
    """A golden directory whose files do not pair up."""


@dataclass(frozen=True)
class GoldenItem:
    name: str
    image: Path
    text: str


def read_golden_set(directory: Path) -> list[GoldenItem]:
    """The pairs of `directory`, sorted by name. An image without text or text without an image is an
    error: silently skipping it would change what the gate measures."""
    images = {p.stem: p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()}
    texts = {p.stem: p for p in directory.glob("*.txt") if p.is_file()}
    unpaired = sorted(set(images) ^ set(texts))
    if unpaired:
        raise GoldenSetError(f"{directory}: unpaired golden files for {', '.join(unpaired)}")
    if not images:
        raise GoldenSetError(f"{directory} holds no golden images")
    return [GoldenItem(name, images[name], texts[name].read_text(encoding="utf-8")) for name in sorted(images)]
