"""Printing tables and writing result files, shared by every benchmark."""

from __future__ import annotations

import platform
import time
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def print_table(headers: list[str], rows: list[list[object]]) -> None:
    """A plain fixed-width table (also valid Markdown, so it can be pasted into RESULTS.md)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"

    print(line(cells[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print(line(row))


def results_path(name: str) -> Path:
    """bench/results/<name>-<timestamp>.json (the directory is git-ignored)."""
    RESULTS_DIR.mkdir(exist_ok=True)
    return RESULTS_DIR / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"


def machine() -> dict[str, object]:
    """What the numbers were measured on."""
    import os

    model = platform.processor()
    try:
        for row in Path("/proc/cpuinfo").read_text().splitlines():
            if row.startswith("model name"):
                model = row.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "load_avg": os.getloadavg(),
    }
