"""Character error rate, the one accuracy measure used everywhere: quality gate, feedback, benchmarks.

PP-OCR's Chinese+English models drop spaces between Latin words ("INVOICE NO" -> "INVOICENO") and
receipts are printed in capitals, so text is compared case-folded with all whitespace removed;
otherwise every version would "fail" on spacing nobody reads.
"""

from __future__ import annotations

import re

from rapidfuzz.distance import Levenshtein

_WHITESPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """The form in which texts are compared: whitespace removed, case-folded."""
    return _WHITESPACE.sub("", text).casefold()


def edit_distance(hypothesis: str, reference: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions) between the normalized texts."""
    return Levenshtein.distance(normalize_text(hypothesis), normalize_text(reference))


def cer(hypothesis: str, reference: str) -> float:
    """Edits / reference characters, after normalisation. An empty reference gives 0 if the hypothesis
    is empty too, else 1 (everything read is spurious)."""
    ref_len = len(normalize_text(reference))
    if ref_len == 0:
        return 0.0 if not normalize_text(hypothesis) else 1.0
    return edit_distance(hypothesis, reference) / ref_len
