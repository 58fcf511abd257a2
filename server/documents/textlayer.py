"""A PDF page's own text as OCR-shaped lines, and when to trust it over OCR.

pdfium gives characters with boxes; a reader wants lines as the OCR pipeline returns them: text, a
4-point box in the pixels of the rendered page, a score, an angle. Characters join a line while they
sit on its baseline and follow it closely; a wide horizontal gap starts a new line, as the detector
splits a row at a column gap, so layer lines and OCR lines of the same page look alike to a client and
to the field rules. Lines are built in page space, where the text runs left to right, and only their
corners are mapped to pixels, so a page turned by /Rotate gives whole lines too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

GENERATED, INVISIBLE = 1, 2  # flag bits of a character from the renderer process
# A gap wider than this many line heights between two characters of one baseline splits the line
# (a normal word space is about a third of the height; table columns and "TOTAL ...... 9.00" are wider).
COLUMN_GAP = 1.5


@dataclass
class TextLayerLine:
    """One line of a page's text layer, shaped like the pipeline's `TextLine`."""

    text: str
    box: np.ndarray  # (4, 2) float32, clockwise from top-left, in rendered-page pixels
    score: float = 1.0  # the producer wrote this text: no recognition uncertainty
    angle: int = 0
    invisible: bool = False  # all of it in render mode 3 (a scanner's OCR layer)

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "score": round(float(self.score), 4),
            "box": [[int(round(float(x))), int(round(float(y)))] for x, y in self.box],
            "angle": self.angle,
        }


@dataclass
class _Building:
    chars: list[str]
    x0: float
    y0: float
    x1: float
    y1: float
    invisible: bool
    pending_space: bool = False

    @property
    def height(self) -> float:
        return max(1e-6, self.y1 - self.y0)

    def finish(self, transform: Sequence[float]) -> TextLayerLine | None:
        text = "".join(self.chars).strip()
        if not text:
            return None
        a, b, c, d, e, f = transform
        # Corners in page space (y0/y1 here are the negated top/bottom), clockwise from the text's
        # top-left, mapped to pixels.
        corners = [(self.x0, -self.y0), (self.x1, -self.y0), (self.x1, -self.y1), (self.x0, -self.y1)]
        box = np.array([[a * x + b * y + c, d * x + e * y + f] for x, y in corners], dtype=np.float32)
        return TextLayerLine(text, box, invisible=self.invisible)


def group_lines(chars: Sequence[Sequence[Any]], transform: Sequence[float]) -> list[TextLayerLine]:
    """Characters `[char, left, bottom, right, top, flags]` in page space (points, y up) in content
    order -> lines in reading order, their boxes mapped by `transform` (a, b, c, d, e, f: pixel x =
    a*x + b*y + c, pixel y = d*x + e*y + f) into the rendered page."""
    lines: list[TextLayerLine] = []
    current: _Building | None = None

    def close() -> None:
        nonlocal current
        if current is not None:
            line = current.finish(transform)
            if line is not None:
                lines.append(line)
        current = None

    for char, x0, bottom, x1, top, flags in chars:
        y0, y1 = -top, -bottom  # y grows downwards from here on, as on the page
        if char in "\r\n":
            close()
            continue
        if char.isspace() or flags & GENERATED:
            if current is not None:
                current.pending_space = True
            continue
        invisible = bool(flags & INVISIBLE)
        if current is not None:
            centre = (y0 + y1) / 2
            same_baseline = current.y0 <= centre <= current.y1
            gap = x0 - current.x1
            if not same_baseline or gap > COLUMN_GAP * current.height or x1 < current.x0 or invisible != current.invisible:
                close()
        if current is None:
            current = _Building([char], x0, y0, x1, y1, invisible)
            continue
        if current.pending_space:
            current.chars.append(" ")
            current.pending_space = False
        current.chars.append(char)
        current.x0, current.y0 = min(current.x0, x0), min(current.y0, y0)
        current.x1, current.y1 = max(current.x1, x1), max(current.y1, y1)
    close()
    return reading_order(lines)


def reading_order(lines: list[TextLayerLine]) -> list[TextLayerLine]:
    """Top to bottom, then left to right within a row (in pixels): the order the OCR pipeline returns."""
    if not lines:
        return lines
    heights = [float(line.box[:, 1].max() - line.box[:, 1].min()) for line in lines]
    tolerance = max(1.0, float(np.median(heights)) / 2)
    by_centre = sorted(lines, key=lambda line: float(line.box[:, 1].mean()))
    rows: list[list[TextLayerLine]] = []
    for line in by_centre:
        centre = float(line.box[:, 1].mean())
        if rows and abs(centre - float(rows[-1][0].box[:, 1].mean())) <= tolerance:
            rows[-1].append(line)
        else:
            rows.append([line])
    return [line for row in rows for line in sorted(row, key=lambda l: float(l.box[:, 0].min()))]


@dataclass(frozen=True)
class PageText:
    """What the renderer reports about a page's content, for `prefer_layer`."""

    chars: int  # non-space characters in the text layer
    real_chars: int  # of those, mapped to real Unicode text (not private-use, control or U+FFFD)
    visible_real_chars: int  # of those, drawn visibly (not render mode 3)
    image_coverage: float  # share of the page area under images, 0..1
    scan_dpi: float  # resolution of a page-filling image, 0 when there is none


# The `pdf_text=auto` rule (bench/RESULTS.md, "PDF text layer or OCR"): the layer answers only for a page
# that is clearly born digital: enough visible, really encoded text and no scan under it. Everything
# else is read by OCR, which is always right to use, only slower.
MIN_LAYER_CHARS = 40
MIN_REAL_SHARE = 0.9
MAX_IMAGE_COVERAGE = 0.5


def prefer_layer(page: PageText) -> bool:
    """Whether `pdf_text=auto` answers this page from its text layer."""
    if page.visible_real_chars < MIN_LAYER_CHARS:
        return False  # a scan, a scan with a stamp or page number, or a scanner's invisible OCR layer
    if page.real_chars < MIN_REAL_SHARE * page.chars:
        return False  # fonts without a Unicode map: the "text" is glyph numbers
    return page.image_coverage < MAX_IMAGE_COVERAGE
