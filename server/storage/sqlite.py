"""SQLite databases shared by the worker processes of one machine (in the state directory).

Each process, and each of its threads, opens its own connection, lazily: a sqlite3 connection must not
cross a fork (Gunicorn forks the workers) nor be used by two threads at once. WAL mode lets one worker
write while the others read; `transaction` takes the write lock up front (BEGIN IMMEDIATE), so a
read-then-write is never interleaved with another worker's.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

# How long a writer waits for another worker's transaction before giving up (they take milliseconds).
BUSY_TIMEOUT_S = 5.0


class Database:
    def __init__(self, path: Path, schema: str) -> None:
        self.path = path
        self.schema = schema
        self._local = threading.local()

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened, and the schema created, on first use); raises OSError or
        sqlite3.Error when the file cannot be opened."""
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None and self._local.pid == os.getpid():
            return connection
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash, which is what matters
        connection.execute("PRAGMA foreign_keys=ON")
        connection.executescript(self.schema)
        self._local.connection, self._local.pid = connection, os.getpid()
        return connection

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT on this thread's connection, rolled back on any exception."""
        connection = self.connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
