"""The pages of a multi-page image file: every page of a TIFF, in order, within the same limits as a PDF.

Which formats have pages: TIFF only. A multi-page TIFF is how fax servers and document scanners deliver
a document, one page per frame. The frames of an animated GIF, WebP or PNG are moments of an animation
(each usually a small change of the one before), and the second "frame" of an MPO photo is the other
eye of a stereo pair or a preview; reading them all would repeat the same text and multiply the work,
so those formats keep being read from their first frame, as `server.documents.decode` always did.

Frames are counted by seeking (headers only) and never past what the request could read, so a file
declaring a million pages costs a bounded number of seeks. Each frame's declared size is checked
against the pixel limit before its pixels are decoded, and frames are decoded one at a time.
"""

from __future__ import annotations

import warnings
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps

from server.documents.decode import to_rgb_array
from server.documents.errors import DecodeError
from server.documents.selection import PageSelection, selected_pages

PAGED_FORMATS = frozenset({"TIFF"})


def has_pages(image: Image.Image) -> bool:
    """Whether `image` (opened, not decoded) is a document with more than one page to read."""
    if image.format not in PAGED_FORMATS:
        return False
    paged = count_pages(image, 2) > 1
    _seek(image, 0)
    return paged


def _seek(image: Image.Image, index: int) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image.seek(index)
    except EOFError:
        return False
    except Exception as exc:  # a broken page directory
        raise DecodeError(422, "corrupt_image", f"page {index + 1} of the {image.format} file is unreadable: {exc}",
                          page=index + 1) from exc
    return True


def count_pages(image: Image.Image, cap: int) -> int:
    """Frames of `image`, counted up to `cap` (more than `cap` returns `cap`)."""
    count = 0
    while count < cap and _seek(image, count):
        count += 1
    return count


class ImagePages:
    """The chosen pages of an opened multi-page image, each decoded on demand to BGR."""

    def __init__(self, image: Image.Image, max_pixels: int, max_pages: int,
                 selection: PageSelection | None = None) -> None:
        self.image = image
        self.max_pixels = max_pixels
        # Without a selection, one page past the limit is enough to refuse a document that is too long.
        cap = selection.pages_to_count(max_pages) if selection else max_pages + 1
        self.page_count = count_pages(image, cap)
        self.numbers = selected_pages(selection, self.page_count, max_pages)
        for number in self.numbers:
            self._check(number)

    def _check(self, number: int) -> None:
        if not _seek(self.image, number - 1):
            raise DecodeError(422, "corrupt_image", f"page {number} of the {self.image.format} file is missing",
                              page=number)
        width, height = self.image.size
        if width < 1 or height < 1:
            raise DecodeError(422, "invalid_image", f"page {number} declares an empty size {width}x{height}", page=number)
        if width * height > self.max_pixels:
            raise DecodeError(
                413, "image_too_large",
                f"page {number} is {width}x{height} = {width * height} pixels; the limit is {self.max_pixels}",
                page=number, width=width, height=height, max_pixels=self.max_pixels,
            )

    def size(self, number: int) -> tuple[int, int]:
        """(width, height) of page `number` after its EXIF orientation."""
        _seek(self.image, number - 1)
        width, height = self.image.size
        orientation = self.image.getexif().get(0x0112, 1)
        return (height, width) if orientation in (5, 6, 7, 8) else (width, height)

    def render(self, number: int) -> np.ndarray:
        """Page `number` as a contiguous (H, W, 3) BGR uint8 array, converted as single images are."""
        self._check(number)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.image.load()
                frame = ImageOps.exif_transpose(self.image)  # a copy: the file stays open for the next page
                rgb = to_rgb_array(frame)
        except DecodeError:
            raise
        except Exception as exc:  # OSError (truncated), ValueError, ...
            raise DecodeError(422, "corrupt_image", f"page {number} of the {self.image.format} file is truncated or "
                              f"corrupt: {exc}", page=number) from exc
        return np.ascontiguousarray(rgb[:, :, ::-1])

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        for number in self.numbers:
            yield number, self.render(number)

    def close(self) -> None:
        self.image.close()
