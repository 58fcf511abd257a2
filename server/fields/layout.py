"""Where lines sit relative to each other: rows, what is to the right of a label, what is below it.

Labels and values are often separate lines: the detector splits "TOTAL ........ 9.00" at the gap, and
narrow receipts print a value under its label. These helpers find the value a label points at.
"""

from __future__ import annotations

from typing import Callable

from server.fields.types import Line


def rows(lines: list[Line]) -> list[list[Line]]:
    """Lines grouped into rows (vertical centres within half a line height), top to bottom, each row
    left to right."""
    ordered = sorted(lines, key=lambda l: l.centre_y)
    out: list[list[Line]] = []
    for line in ordered:
        if out:
            anchor = out[-1][0]
            if abs(line.centre_y - anchor.centre_y) <= 0.5 * min(line.height, anchor.height):
                out[-1].append(line)
                continue
        out.append([line])
    return [sorted(row, key=lambda l: l.x0) for row in out]


def right_of(line: Line, lines: list[Line], drift: float = 0.0) -> list[Line]:
    """Lines on the same row as `line` that start right of its middle, nearest first. `drift` is how
    far (pixels, down positive) the right-hand column sits off the labels' rows (see `column_drift`)."""
    centre = line.centre_y + drift
    same = [o for o in lines if o is not line and abs(o.centre_y - centre) <= 0.5 * min(o.height, line.height)
            and o.x0 >= (line.x0 + line.x1) / 2]
    return sorted(same, key=lambda o: o.x0)


def column_drift(label: Line, lines: list[Line], is_label: Callable[[Line], bool], window: float = 8.0) -> float:
    """How far the values right of `label`'s column sit below (or above) their labels' rows, near it.

    A photographed receipt that bends or tilts puts the right-aligned amounts a fraction of a line
    off their labels, so the nearest line to the right may be the next row's amount. The drift is the
    shift that best pairs the labels (`is_label`: e.g. the money labels of a receipt's totals block,
    not its item descriptions, whose prices sit on the next row) of `label`'s column, within `window`
    line heights of it, with the figures to their right (each pairing's cost capped at one line
    height). Rows are about a line height apart, so shifting by a whole row always pairs well too: the
    labels' own rows are kept whenever they pair closely as printed (median gap within a quarter of
    a line height).
    """
    height = label.height
    near = [o for o in lines if abs(o.centre_y - label.centre_y) <= window * height]
    labels = [o for o in near if o.x0 < label.x1 and o.x1 > label.x0 and is_label(o)]
    values = [o for o in near if o.x0 >= label.x1 - 0.5 * height and any(c.isdigit() for c in o.text)
              and _letters(o.text) <= 0.4]
    if len(labels) < 2 or not values:
        return 0.0
    shifts = {0.0} | {v.centre_y - l.centre_y for l in labels for v in values
                      if abs(v.centre_y - l.centre_y) <= 0.9 * height and v.x0 >= l.x1 - 0.5 * height}

    def gaps(shift: float) -> list[float]:
        out = []
        for l in labels:
            found = [abs(l.centre_y + shift - v.centre_y) for v in values if v.x0 >= l.x1 - 0.5 * height]
            out.append(min([height, *found]))
        return out

    as_printed = sorted(g for g in gaps(0.0) if g < 0.9 * height)
    if as_printed and as_printed[len(as_printed) // 2] <= 0.25 * height:
        return 0.0
    return min(sorted(shifts, key=abs), key=lambda shift: sum(gaps(shift)))


def below(line: Line, lines: list[Line], max_rows: float = 1.6) -> list[Line]:
    """Lines starting under `line` within `max_rows` line heights that overlap it horizontally or lie
    right of it, nearest first."""
    under = [o for o in lines if o is not line and 0 < o.centre_y - line.centre_y <= max_rows * line.height
             and o.x1 >= line.x0]
    return sorted(under, key=lambda o: (o.centre_y, o.x0))


def _letters(text: str) -> float:
    """Share of letters among the non-space characters: labels are words, values are figures."""
    chars = [c for c in text if not c.isspace()]
    return sum(c.isalpha() for c in chars) / max(1, len(chars))


def reading_order(lines: list[Line]) -> list[Line]:
    return [line for row in rows(lines) for line in row]
