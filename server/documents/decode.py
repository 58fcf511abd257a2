"""Bytes from a client -> a BGR uint8 image the pipeline can read, or a clear 4xx `DecodeError`.

Decoding is split in two so that a request can be refused cheaply and memory stays bounded:

- `open_image` reads only the header. A decompression bomb (a small file declaring a huge image) is
  refused by its declared size before a single pixel is decoded, and formats we do not read are
  refused before any of their decoders runs. The API opens every image of a request this way first.
- `to_bgr` decodes the pixels. Truncated or corrupt files fail here and are reported, never passed on
  half-decoded. EXIF orientation is applied (phone photos of cheques are often stored sideways), alpha
  is composited on white (transparent PNG text stays readable), 16-bit and float images are scaled to
  8 bits, palette/grayscale/CMYK images become RGB. The API decodes one image at a time just before
  recognising it, so a request of many large images holds one decoded image, not all of them.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from server.documents.errors import DecodeError

ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "BMP", "TIFF", "WEBP", "GIF", "PPM", "MPO"})

# Our own pixel limit is enforced before decoding; Pillow's global guard would only duplicate it
# with a different number and a warning.
Image.MAX_IMAGE_PIXELS = None

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Identify `data` and check its declared size; the pixels are not decoded yet."""
    if not data:
        raise DecodeError(400, "empty_image", "the image is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        if data.startswith(b"%PDF"):  # the API reads PDFs as documents (server.documents.sources)
            raise DecodeError(415, "unsupported_image_format",
                              "the data is a PDF, not an image") from exc
        raise DecodeError(422, "invalid_image", "the data is not an image in a format this server reads") from exc
    except Exception as exc:  # a header so broken Pillow cannot even identify it
        raise DecodeError(422, "invalid_image", f"cannot read the image header: {exc}") from exc
    if image.format not in ACCEPTED_FORMATS:
        raise DecodeError(
            415, "unsupported_image_format",
            f"image format {image.format} is not accepted; use one of {', '.join(sorted(ACCEPTED_FORMATS))}",
        )
    width, height = image.size
    if width < 1 or height < 1:
        raise DecodeError(422, "invalid_image", f"the image declares an empty size {width}x{height}")
    if width * height > max_pixels:
        raise DecodeError(
            413, "image_too_large",
            f"the image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}",
            width=width, height=height, max_pixels=max_pixels,
        )
    return image


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """Any Pillow mode -> (H, W, 3) uint8 RGB (also used for each page of a multi-page TIFF)."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if mode in _SIXTEEN_BIT_MODES:
            gray = values / 257.0  # the full 16-bit range onto 8 bits
        else:  # 32-bit integer or float samples have no fixed range: stretch what is there
            low, high = float(values.min()), float(values.max())
            gray = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
        gray8 = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
        return np.repeat(gray8[:, :, np.newaxis], 3, axis=2)
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    if mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image)


def to_bgr(image: Image.Image) -> np.ndarray:
    """Decode an image from `open_image` into a contiguous (H, W, 3) BGR uint8 array, upright.

    The Pillow image is closed afterwards, so its decoded pixels are freed as soon as the array exists.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of an upright image
            rgb = to_rgb_array(image)
    except Exception as exc:  # OSError (truncated), SyntaxError (broken PNG chunks), ValueError, ...
        raise DecodeError(422, "corrupt_image", f"the {image.format} image is truncated or corrupt: {exc}") from exc
    finally:
        image.close()
    return np.ascontiguousarray(rgb[:, :, ::-1])


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """`open_image` then `to_bgr`: bytes to a BGR uint8 array, the pixel limit checked first."""
    return to_bgr(open_image(data, max_pixels))
