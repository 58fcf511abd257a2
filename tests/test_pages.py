"""Multi-page TIFFs (server.documents.pages) and the `pages` option's parser (server.documents.selection)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from server.documents.decode import open_image
from server.documents.errors import DecodeError
from server.documents.pages import ImagePages, count_pages, has_pages
from server.documents.selection import PageSelection, selected_pages
from tests.support.images import render_text


def tiff(pages: list[Image.Image], **save: object) -> bytes:
    buffer = io.BytesIO()
    pages[0].save(buffer, format="TIFF", save_all=True, append_images=pages[1:], **save)
    return buffer.getvalue()


def opened(data: bytes) -> Image.Image:
    return open_image(data, 40_000_000)


# -- page selection --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "count", "pages"), [
    ("1-3,5", 10, (1, 2, 3, 5)),
    ("5,1-3", 10, (1, 2, 3, 5)),  # document order, whatever order the ranges were written in
    ("2-4,3-6", 10, (2, 3, 4, 5, 6)),  # each page once
    ("8-", 10, (8, 9, 10)),
    ("-2", 10, (1, 2)),
    (" 3 ", 3, (3,)),
    ("1 - 2 , 4", 4, (1, 2, 4)),
])
def test_selection_resolves(spec: str, count: int, pages: tuple[int, ...]) -> None:
    assert PageSelection.parse(spec).resolve(count) == pages


@pytest.mark.parametrize("spec", ["", " ", "0", "1-0", "3-2", "a", "1;2", "1,,2", "1--2", "-", "1-2-3", "x-3",
                                  "1.5", ",".join(["1"] * 65)])
def test_selection_syntax_errors_are_400(spec: str) -> None:
    with pytest.raises(DecodeError) as caught:
        PageSelection.parse(spec)
    assert (caught.value.status, caught.value.code, caught.value.details) == (400, "invalid_option",
                                                                               {"option": "pages"})


@pytest.mark.parametrize("spec", ["4", "2-4", "1,7"])
def test_selection_past_the_end_is_422(spec: str) -> None:
    with pytest.raises(DecodeError) as caught:
        PageSelection.parse(spec).resolve(3)
    assert (caught.value.status, caught.value.code) == (422, "page_out_of_range")
    assert caught.value.details == {"pages": PageSelection.parse(spec).spec, "page_count": 3}


def test_too_many_pages_and_how_far_to_count() -> None:
    with pytest.raises(DecodeError) as caught:
        selected_pages(None, 20, 16)
    assert (caught.value.status, caught.value.code) == (413, "too_many_pages")
    assert "pages=" in caught.value.message  # says how to choose some
    assert selected_pages(PageSelection.parse("3-18"), 20, 16) == tuple(range(3, 19))
    assert PageSelection.parse("2-4,9").pages_to_count(16) == 9
    assert PageSelection.parse("2-4,9-").pages_to_count(16) == 25


# -- multi-page TIFF ---------------------------------------------------------------------------------------


def test_every_tiff_page_in_order_with_its_own_size_and_mode() -> None:
    first = render_text(["PAGE ONE"])
    second = render_text(["PAGE TWO IS LONGER"], mode="L")
    third = render_text(["3"]).convert("P")
    data = tiff([first, second, third], compression="tiff_deflate")
    image = opened(data)
    assert has_pages(image)
    pages = ImagePages(image, max_pixels=40_000_000, max_pages=16)
    assert pages.page_count == 3 and pages.numbers == (1, 2, 3)
    read = list(pages)
    assert [n for n, _ in read] == [1, 2, 3]
    for (number, bgr), source in zip(read, (first, second, third)):
        assert bgr.shape == (source.height, source.width, 3) and bgr.dtype == np.uint8 and bgr.flags["C_CONTIGUOUS"]
        assert np.array_equal(bgr[:, :, ::-1], np.asarray(source.convert("RGB")))  # lossless: exactly the page
        assert pages.size(number) == (source.width, source.height)
    pages.close()


def test_fax_tiff_pages() -> None:
    """What fax servers send: 1-bit pages, CCITT G4 compressed."""
    pages = [render_text([f"FAX PAGE {k}"]).convert("1") for k in range(1, 4)]
    document = ImagePages(opened(tiff(pages, compression="group4")), max_pixels=40_000_000, max_pages=16)
    for (number, bgr), source in zip(document, pages):
        assert set(np.unique(bgr)) <= {0, 255}
        assert np.array_equal(bgr[:, :, 0] == 255, np.asarray(source))


def test_tiff_selection_and_limits() -> None:
    pages = [render_text([f"P{k}"]) for k in range(1, 7)]
    data = tiff(pages)
    chosen = ImagePages(opened(data), 40_000_000, 16, PageSelection.parse("2,5-"))
    assert [n for n, _ in chosen] == [2, 5, 6]
    with pytest.raises(DecodeError) as caught:
        ImagePages(opened(data), 40_000_000, 4)
    assert (caught.value.status, caught.value.code) == (413, "too_many_pages")
    with pytest.raises(DecodeError) as caught:
        ImagePages(opened(data), 40_000_000, 16, PageSelection.parse("7"))
    assert (caught.value.status, caught.value.code, caught.value.details["page_count"]) == (422, "page_out_of_range", 6)


def test_tiff_page_over_the_pixel_limit_is_refused_before_decoding() -> None:
    small, large = render_text(["SMALL"]), Image.new("L", (3000, 2000), 255)
    data = tiff([small, large])
    limit = 3000 * 2000 - 1
    with pytest.raises(DecodeError) as caught:
        ImagePages(opened(data), limit, 16)
    assert (caught.value.status, caught.value.code) == (413, "image_too_large")
    assert caught.value.details == {"page": 2, "width": 3000, "height": 2000, "max_pixels": limit}
    assert [n for n, _ in ImagePages(opened(data), limit, 16, PageSelection.parse("1"))] == [1]


def test_page_count_bomb_is_counted_only_as_far_as_needed() -> None:
    pages = [Image.new("1", (8, 8), 1) for _ in range(300)]
    image = opened(tiff(pages))
    assert count_pages(image, 17) == 17  # stops seeking at the cap
    with pytest.raises(DecodeError) as caught:
        ImagePages(image, 40_000_000, 16)
    assert caught.value.code == "too_many_pages"


def test_truncated_tiff_page_is_a_corrupt_image() -> None:
    pages = [render_text(["FIRST"]), render_text(["SECOND PAGE"])]
    data = tiff(pages)
    cut = data[: int(len(data) * 0.75)]
    with pytest.raises(DecodeError) as caught:
        document = ImagePages(opened(cut), 40_000_000, 16)
        list(document)
    assert caught.value.status == 422 and caught.value.code == "corrupt_image"


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animations_are_not_documents(fmt: str) -> None:
    frames = [render_text([f"FRAME {k}"]).convert("RGB") for k in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format=fmt, save_all=True, append_images=frames[1:], duration=100)
    image = opened(buffer.getvalue())
    assert getattr(image, "n_frames", 1) == 3 and not has_pages(image)


def test_single_page_tiff_is_not_paged() -> None:
    assert not has_pages(opened(tiff([render_text(["ONE"])])))
