"""Shadow traffic: a share of requests is read again by the canary candidate, after the client's answer
is built, and the two readings are compared (agreement = 1 - CER of the candidate's text against the
stable version's). The client never waits for it and never sees it.

The candidate's reading runs on one background thread per worker from a queue of `QUEUE_SIZE` requests;
a request that finds the queue full is not shadowed (counted in `ocr_rollout_shadow_dropped_total`):
shadow traffic must shed work, never add latency or memory without bound. A ticket keeps at most
`MAX_PAGES` decoded pages of its request, and only once the request was chosen and had room.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from server.lifecycle.manager import ModelManager
from server.observability.metrics import ROLLOUT_SHADOW_DROPPED
from server.quality.rollout_samples import RolloutSamples
from server.quality.textmetrics import cer

log = logging.getLogger(__name__)

QUEUE_SIZE = 4
MAX_PAGES = 4
IDLE_S = 5.0  # the thread ends after this long without work


@dataclass
class ShadowTicket:
    """One request chosen for shadowing: its pages and what the stable version read on each."""

    rollout: str
    pages: list[tuple[np.ndarray, str]] = field(default_factory=list)

    def add(self, image: np.ndarray, stable_text: str) -> None:
        if len(self.pages) < MAX_PAGES:
            self.pages.append((image, stable_text))


class ShadowRunner:
    def __init__(self, manager: ModelManager, samples: RolloutSamples,
                 current: Callable[[], tuple[str, float] | None]) -> None:
        """`current` says (the rollout's key, its shadow share in percent) while this worker holds a
        candidate with a shadow share, else None."""
        self.manager = manager
        self.samples = samples
        self.current = current
        self._queue: queue.Queue[tuple[ShadowTicket, Any]] = queue.Queue(QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def ticket(self) -> ShadowTicket | None:
        """A ticket when this request is to be shadowed (its share, and room in the queue), else None."""
        current = self.current()
        if current is None or random.random() * 100 >= current[1]:
            return None
        if self._queue.full():
            ROLLOUT_SHADOW_DROPPED.inc()
            return None
        return ShadowTicket(current[0])

    def submit(self, ticket: ShadowTicket, options: Any) -> None:
        """Queue the ticket's pages for the candidate (dropped if the queue filled meanwhile)."""
        if not ticket.pages:
            return
        try:
            self._queue.put_nowait((ticket, options))
        except queue.Full:
            ROLLOUT_SHADOW_DROPPED.inc()
            return
        with self._lock:
            if not self._stopping.is_set() and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)
                self._thread.start()

    def stop(self, timeout: float) -> bool:
        """End the shadow thread before the interpreter does (a thread killed inside a model run aborts
        the process); False if a reading still runs after `timeout`."""
        self._stopping.set()
        with self._lock:
            thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _run(self) -> None:
        idle_s = 0.0
        while not self._stopping.is_set() and idle_s < IDLE_S:  # idle: the next submit starts it again
            try:
                ticket, options = self._queue.get(timeout=1.0)
            except queue.Empty:
                idle_s += 1.0
                continue
            idle_s = 0.0
            try:
                self._read(ticket, options)
            except Exception:  # a shadow reading must never take the worker down
                log.exception("shadow reading failed")

    def _read(self, ticket: ShadowTicket, options: Any) -> None:
        with self.manager.hold_candidate() as candidate:
            if candidate is None:  # the canary ended meanwhile
                return
            for image, stable_text in ticket.pages:
                started = time.perf_counter()
                result = candidate.pipeline.run(image, options)
                text = "\n".join(line.text for line in result.lines)
                agreement = 1.0 - min(1.0, cer(text, stable_text)) if stable_text.strip() else float(not text.strip())
                self.samples.add_shadow(ticket.rollout, candidate.version, agreement, time.perf_counter() - started)
