"""A parsed configuration file that follows its file on disk.

The access policy, the trusted keys and the revocation list change while the server runs (a new team
member, a leaked key revoked at 3 a.m.); restarting every worker for that is how revocations get
postponed. Each worker checks the files' stat (size, mtime, inode, and a directory's listing) at most
once per `min_interval_s` and re-parses on a change.

A change that does not parse keeps the last good value and records the error (logged once): a typo
in the policy must neither lock everyone out nor open the server. The first load has no good value
to fall back on, so it raises and the server does not start.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

Signature = tuple[tuple[str, int, int, int], ...]


def stat_signature(paths: list[Path]) -> Signature:
    """What changes when any of `paths` (files, or directories and the files directly in them) changes."""
    parts: list[tuple[str, int, int, int]] = []
    for path in paths:
        targets = [path]
        if path.is_dir():
            try:
                targets += sorted(path.iterdir())
            except OSError:
                pass
        for target in targets:
            try:
                info = os.stat(target)
            except OSError:
                parts.append((str(target), -1, -1, -1))
                continue
            parts.append((str(target), info.st_size, info.st_mtime_ns, info.st_ino))
    return tuple(parts)


class Reloading(Generic[T]):
    """`load()` returns (value, the paths it read); `get()` gives the value, re-loading on change."""

    def __init__(self, load: Callable[[], tuple[T, list[Path]]], *, min_interval_s: float = 1.0) -> None:
        self._load = load
        self._min_interval_s = min_interval_s
        self._lock = threading.Lock()
        value, paths = load()  # raises: a server whose policy does not parse must not start
        self._value = value
        self._paths = paths
        self._signature = stat_signature(paths)
        self._checked = time.monotonic()
        self.error: str | None = None  # why the files on disk are not in force (None: they are)

    def get(self) -> T:
        now = time.monotonic()
        if now - self._checked < self._min_interval_s:
            return self._value
        with self._lock:
            if now - self._checked < self._min_interval_s:
                return self._value
            self._checked = now
            signature = stat_signature(self._paths)
            if signature != self._signature:
                self._signature = signature
                try:
                    self._value, self._paths = self._load()
                    self._signature = stat_signature(self._paths)
                    self.error = None
                except Exception as exc:  # any parse error: keep serving with the last good value
                    self.error = str(exc)
                    log.error("keeping the previous configuration: %s", exc)
            return self._value
