"""The `pages` option: which pages of a document to read, as people write it in a print dialog.

`1-3,5` is pages 1, 2, 3 and 5; `4-` is page 4 to the end; `-2` is pages 1 and 2. Pages are numbered
from 1 and read in document order, each once, whatever order or overlap the ranges were written in.
The syntax is checked when the option is parsed (400, before the document is opened); whether the
pages exist is checked once the page count is known (422).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from server.documents.errors import DecodeError, shown

_RANGE = re.compile(r"^\s*(\d*)\s*(-?)\s*(\d*)\s*$")
# A page number has at most this many digits: longer ones are no document's (and past 4300 digits,
# int() raises ValueError).
MAX_DIGITS = 9
# More ranges than this is not a page selection a person writes; it bounds the parse's work.
MAX_RANGES = 64


@dataclass(frozen=True)
class PageSelection:
    """Inclusive 1-based ranges; `None` as an end means "the last page"."""

    ranges: tuple[tuple[int, int | None], ...]

    @classmethod
    def parse(cls, spec: str) -> "PageSelection":
        if not isinstance(spec, str) or not spec.strip():
            raise _invalid(spec, "give pages like 1-3,5")
        parts = spec.split(",")
        if len(parts) > MAX_RANGES:
            raise _invalid(spec, f"at most {MAX_RANGES} ranges")
        ranges: list[tuple[int, int | None]] = []
        for part in parts:
            match = _RANGE.match(part)
            if not match or not (match.group(1) or match.group(3)):
                raise _invalid(spec, f"{part.strip()!r} is not a page or a range like 2-4")
            first, dash, last = match.groups()
            if len(first) > MAX_DIGITS or len(last) > MAX_DIGITS:
                raise _invalid(spec, f"page numbers have at most {MAX_DIGITS} digits")
            if not dash and not first:
                raise _invalid(spec, f"{part.strip()!r} is not a page or a range like 2-4")
            start = int(first) if first else 1
            end: int | None = (int(last) if last else None) if dash else start
            if start < 1 or (end is not None and end < 1):
                raise _invalid(spec, "pages are numbered from 1")
            if end is not None and end < start:
                raise _invalid(spec, f"range {start}-{end} runs backwards")
            ranges.append((start, end))
        return cls(tuple(ranges))

    def resolve(self, page_count: int) -> tuple[int, ...]:
        """The selected page numbers (1-based, ascending, unique) of a document of `page_count` pages."""
        wanted: set[int] = set()
        for start, end in self.ranges:
            last = page_count if end is None else end
            if start > page_count or last > page_count:
                raise DecodeError(
                    422, "page_out_of_range",
                    f"pages={self.spec}: the document has {page_count} page{'s' if page_count != 1 else ''}",
                    pages=self.spec, page_count=page_count,
                )
            wanted.update(range(start, last + 1))
        return tuple(sorted(wanted))

    def pages_to_count(self, max_pages: int) -> int:
        """How many pages of a document must be counted to resolve this selection under `max_pages`:
        up to the highest page named, and far enough past the start of a range that runs to the end
        to see it select more than `max_pages`. Counting stops there (a file may declare millions)."""
        bounded = [end for _, end in self.ranges if end is not None]
        open_starts = [start for start, end in self.ranges if end is None]
        return max(bounded + [start + max_pages for start in open_starts])

    @property
    def spec(self) -> str:
        return ",".join(f"{s}" if e == s else f"{s}-{'' if e is None else e}" for s, e in self.ranges)


def _invalid(spec: object, why: str) -> DecodeError:
    return DecodeError(400, "invalid_option", f"pages must be page numbers and ranges such as 1-3,5 ({why}); "
                       f"got {shown(spec)}", option="pages")


def selected_pages(selection: PageSelection | None, page_count: int, max_pages: int) -> tuple[int, ...]:
    """The pages to read, refused when there are none or more than `max_pages` (413)."""
    if page_count < 1:
        raise DecodeError(422, "empty_document", "the document has no pages")
    numbers = selection.resolve(page_count) if selection else tuple(range(1, page_count + 1))
    if len(numbers) > max_pages:
        hint = "" if selection else "; choose some with the pages option (e.g. pages=1-3)"
        raise DecodeError(413, "too_many_pages",
                          f"{len(numbers)} pages to read; the limit is {max_pages} (OCR_MAX_PDF_PAGES){hint}",
                          pages=len(numbers), max_pages=max_pages)
    return numbers
