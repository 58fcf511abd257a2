"""The lifecycle thread's rhythm: one pass at start, one every `poll_s`, one soon after each trigger.

Triggers come from the watcher (a file changed) and the admin API (a pin was written). A copy of a
version produces an event per file, so a trigger is debounced: the pass runs once `debounce_s` has
passed without a further trigger (but no later than five debounce periods after the first, so a
steady trickle of events cannot postpone it for ever). Any exception in a pass is logged and the next
pass runs anyway: nothing stops detection (Triton #6534).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)


class PassLoop:
    def __init__(self, run_pass: Callable[[], None], poll_s: float, debounce_s: float, name: str) -> None:
        self._run_pass = run_pass
        self.poll_s = poll_s
        self.debounce_s = debounce_s
        self._name = name
        self.stopping = threading.Event()  # set by `stop`; long waits inside a pass watch it too
        self.first_pass = threading.Event()  # set once the first pass has ended, whatever its outcome
        self._wake = threading.Event()
        self._last_trigger = 0.0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Ask the thread to end and wait for it; False if it is still inside a pass after `timeout`."""
        self.stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            return not self._thread.is_alive()
        return True

    def trigger(self, reason: str = "") -> None:
        """Ask for a pass soon (after `debounce_s` without further triggers)."""
        log.debug("change: %s", reason)
        self._last_trigger = time.monotonic()
        self._wake.set()

    def _run(self) -> None:
        self._pass_safely()
        self.first_pass.set()
        while not self.stopping.is_set():
            woken = self._wake.wait(self.poll_s)
            if self.stopping.is_set():
                break
            if woken:
                self._debounce()
            self._wake.clear()
            self._pass_safely()

    def _debounce(self) -> None:
        deadline = time.monotonic() + max(5 * self.debounce_s, 5.0)
        while not self.stopping.is_set() and time.monotonic() < deadline:
            quiet = time.monotonic() - self._last_trigger
            if quiet >= self.debounce_s:
                return
            self.stopping.wait(self.debounce_s - quiet)

    def _pass_safely(self) -> None:
        try:
            self._run_pass()
        except Exception:  # a bug or an odd filesystem must not end detection
            log.exception("model lifecycle pass failed; the next pass runs in %.1fs", self.poll_s)
