"""Several threads of one process reading a list of inputs until none is left, as a worker's request
threads would: the loop the in-process throughput benchmarks share."""

from __future__ import annotations

import threading
import time
from typing import Callable


def read_all(count: int, threads: int, read: Callable[[int], None]) -> list[float]:
    """Call `read(i)` once for every i < `count` from `threads` threads; each call's seconds, in the
    order they ended."""
    pending, lock, latencies = iter(range(count)), threading.Lock(), []

    def run() -> None:
        while True:
            with lock:
                i = next(pending, None)
            if i is None:
                return
            began = time.perf_counter()
            read(i)
            latencies.append(time.perf_counter() - began)

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return latencies
