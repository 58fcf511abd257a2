"""What dateparser's first use costs a server worker, and what the warm-up at worker start leaves of it.

    .venv/bin/python bench/fields_warmup.py [--runs 5]

Each run is a fresh interpreter, as a new worker is: it imports `server.fields`, calls
`server.fields.dates.warm_up` or not (the server calls it in `ServerContext.build`), then extracts the
fields of one small receipt whose date has a month name (what dateparser reads) twice: the first
extraction pays whatever dateparser loads on first use, the second is the steady cost. Runs with and
without the warm-up alternate, so a busy machine slows both alike. Printed: medians in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_CHILD = """
import json, sys, time
import numpy as np
from server.fields import extract_fields
from server.fields.dates import warm_up
from server.fields.types import Line

def line(text, row):
    return Line(text, 0.99, np.array([[0, 30 * row], [300, 30 * row], [300, 30 * row + 20], [0, 30 * row + 20]],
                                      dtype=np.float32))

lines = [line(text, row) for row, text in enumerate(
    ["KEDAI BUKU SINAR SDN BHD", "TARIKH: 5 Mei 2018", "BUKU NOTA 2 x 4.50", "TOTAL RM 9.00", "CASH 10.00",
     "CHANGE 1.00"])]
out = {}
if sys.argv[1] == "warm":
    start = time.perf_counter()
    warm_up()
    out["warm_up"] = time.perf_counter() - start
for name in ("first", "second"):
    start = time.perf_counter()
    fields = extract_fields("receipt", lines)
    out[name] = time.perf_counter() - start
assert fields.value("date") == "2018-05-05" and fields.value("total") == "9.00", fields.to_json()
print(json.dumps(out))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh interpreters per mode")
    args = parser.parse_args(argv)
    seen: dict[str, list[dict[str, float]]] = {"cold": [], "warm": []}
    for _ in range(args.runs):
        for mode in seen:
            done = subprocess.run([sys.executable, "-c", _CHILD, mode], cwd=ROOT, capture_output=True, text=True,
                                  check=True)
            seen[mode].append(json.loads(done.stdout))
    print(f"{args.runs} fresh interpreters per row; median ms")
    print(f"{'worker start':<22} {'warm-up':>8} {'first extraction':>17} {'second':>8}")
    for mode, label in (("cold", "no warm-up"), ("warm", "warm_up() at start")):
        runs = seen[mode]
        warm = f"{1000 * statistics.median(r['warm_up'] for r in runs):.0f}" if mode == "warm" else "-"
        print(f"{label:<22} {warm:>8} {1000 * statistics.median(r['first'] for r in runs):>17.1f} "
              f"{1000 * statistics.median(r['second'] for r in runs):>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
