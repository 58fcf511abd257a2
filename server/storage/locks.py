"""Machine-wide locks between processes, on `fcntl.flock`: the one way this server serialises workers,
publishers and installers that share files.

flock locks belong to an open file description and vanish when the process dies, so a worker killed
while holding one never blocks the others.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator


class FileLock:
    """An exclusive lock on `path` held across a long operation (a model load), that a thread can wait
    for without becoming unstoppable."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None

    def acquire(self, stop: threading.Event | None = None, poll_s: float = 0.2) -> bool:
        """Take the lock, polling so that `stop` can end the wait; False if stopped first."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if stop is None:
                    time.sleep(poll_s)
                elif stop.wait(poll_s):
                    handle.close()
                    return False
                continue
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")  # for people reading the file: who holds it
            handle.flush()
            self._handle = handle
            return True

    def try_acquire(self) -> bool:
        """Take the lock if it is free, now; False when another process holds it."""
        done = threading.Event()
        done.set()
        return self.acquire(stop=done, poll_s=0)

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


@contextmanager
def locked(path: Path, mode: str = "a", permissions: int = 0o666) -> Iterator[IO[Any]]:
    """Hold an exclusive lock on `path` for a short critical section (blocking), creating it if needed
    (with `permissions`, less the umask).

    Yields the locked file, opened with `mode` (an append mode: the lock file may be the very file the
    section writes, like the audit log); what the section wrote is flushed before the lock is released.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, mode, opener=lambda name, flags: os.open(name, flags, permissions)) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield handle
        finally:
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)
