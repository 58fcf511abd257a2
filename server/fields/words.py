"""An amount written in English words, as on the "sum of" line of a cheque, to a decimal.

"One thousand two hundred thirty-four dollars and 56/100", "RINGGIT MALAYSIA TWO HUNDRED AND FIFTY
AND SEN TWENTY ONLY", "Fifty six cents": the whole units are number words, the cents come as a
fraction of 100, as number words next to "cents"/"sen", or after the unit word.

OCR drops the spaces between Latin words ("ONETHOUSANDTWOHUNDRED"), so the text is first cut into
known words by longest match (no number word is a prefix of a concatenation that reads differently:
"seventeen" before "seven", "eighty" before "eight"); what cannot be cut is skipped a letter at a
time, so a misread letter costs at most that word. The number words are then valued by text2num.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from text_to_num import text2num

NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty thirty forty fourty fifty sixty seventy eighty ninety "
    "hundred thousand million billion"
).split()
_MAJOR = ("dollars dollar ringgit malaysia pounds pound euros euro rupees rupee francs franc yen "
          "rand pesos peso").split()
_MINOR = "cents cent sen pence penny paise centimes".split()
_SKIP = "and only the sum of exactly no".split()
_VOCABULARY = sorted(set(NUMBER_WORDS + _MAJOR + _MINOR + _SKIP + ["and"]), key=len, reverse=True)
_FRACTION = re.compile(r"(\d{1,2}|no|xx)\s*/\s*100", re.IGNORECASE)
_MISSPELT = {"fourty": "forty"}


@dataclass(frozen=True)
class WordsAmount:
    value: Decimal
    words: tuple[str, ...]  # the words the text was cut into
    coverage: float  # share of the text's letters that are vocabulary words (how much it reads as an amount)


def coverage(text: str) -> float:
    """Share of the letters of `text` that `segment` reads as vocabulary words."""
    letters = sum(c.isalpha() for c in _FRACTION.sub(" ", text))
    if not letters:
        return 1.0 if _FRACTION.search(text) else 0.0
    return sum(len(w) for w in segment(text) if not w.startswith("#")) / letters


def segment(text: str) -> list[str]:
    """`text` cut into vocabulary words (lower case); fractions like 56/100 become "#56"."""
    out: list[str] = []
    lowered = _FRACTION.sub(lambda m: f" #{m.group(1).lower()} ", text.lower())
    for chunk in re.split(r"[^a-z#0-9]+", lowered):
        if chunk.startswith("#"):
            out.append(chunk)
            continue
        position = 0
        while position < len(chunk):
            for word in _VOCABULARY:
                if chunk.startswith(word, position):
                    out.append(word)
                    position += len(word)
                    break
            else:
                position += 1  # an OCR misread or a word we do not know
    return out


def _value(words: list[str]) -> int | None:
    words = [_MISSPELT.get(w, w) for w in words if w in NUMBER_WORDS or w == "and"]
    while words and words[0] == "and":
        words.pop(0)
    while words and words[-1] == "and":
        words.pop()
    if not words:
        return None
    if words == ["zero"]:
        return 0
    try:
        return int(text2num(" ".join(words), "en"))
    except ValueError:
        return None


def _runs(words: list[str]) -> list[tuple[int, int]]:
    """(start, end) of the maximal runs of number words (with "and" inside them)."""
    runs, start = [], None
    for i, word in enumerate(words + ["|"]):
        is_number = word in NUMBER_WORDS or (word == "and" and start is not None)
        if is_number and start is None:
            start = i
        elif not is_number and start is not None:
            runs.append((start, i))
            start = None
    return runs


def parse_amount_words(text: str) -> WordsAmount | None:
    """The amount `text` writes out in words, or None when it holds no number words."""
    words = segment(text)
    if not words:
        return None
    share = coverage(text)
    cents: int | None = None
    fractions = [w for w in words if w.startswith("#")]
    if fractions:
        numerator = fractions[-1][1:]
        cents = int(numerator) if numerator.isdigit() else 0
        words = [w for w in words if not w.startswith("#")]
    runs = _runs(words)
    if not runs:
        return WordsAmount(Decimal(cents or 0) / 100, tuple(words), share) if cents is not None else None
    minor_at = [i for i, w in enumerate(words) if w in _MINOR]
    major_at = [i for i, w in enumerate(words) if w in _MAJOR]
    whole_run = runs[0]
    if cents is None and minor_at:
        marker = minor_at[-1]
        after = [r for r in runs if r[0] == marker + 1]
        before = [r for r in runs if r[1] == marker]
        minor_run = after[0] if after else before[0] if before else None
        if minor_run is not None:
            cents = _value(words[minor_run[0]:minor_run[1]])
            rest = [r for r in runs if r != minor_run]
            if rest:
                whole_run = rest[0]
            else:  # "two hundred and fifty and twenty cents": the cents are the run's last "and" part
                run = words[minor_run[0]:minor_run[1]]
                ands = [i for i, w in enumerate(run) if w == "and"]
                if ands and ands[-1] > 0:
                    cut = ands[-1]
                    cents = _value(run[cut + 1:])
                    return _combine(_value(run[:cut]), cents, words, share)
                return _combine(0, cents, words, share)
    elif cents is None and len(runs) > 1 and major_at and runs[1][0] > major_at[0]:
        cents = _value(words[runs[1][0]:runs[1][1]])  # "ten dollars and fifty": after the unit word
    return _combine(_value(words[whole_run[0]:whole_run[1]]), cents, words, share)


def _combine(whole: int | None, cents: int | None, words: list[str], share: float) -> WordsAmount | None:
    if whole is None or (cents is not None and not 0 <= cents < 100):
        return None
    return WordsAmount(Decimal(whole) + Decimal(cents or 0) / 100, tuple(words), share)
