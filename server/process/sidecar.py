"""A helper process the Gunicorn master keeps running beside its workers (the registry sync).

Gunicorn supervises only its workers, so the master runs this small supervisor: a thread that starts
the command as a child process, waits for it, and starts it again after a backoff when it exits
(1 s, doubling up to a minute; back to 1 s once a run lasted a minute). `stop` ends it with SIGTERM,
then SIGKILL after `stop_timeout_s`.

Why a thread and an exec'd child: the master must not initialise what its forked workers would
inherit (threads, MLflow's HTTP pools). The child is a fresh interpreter (`subprocess`, not a fork of
the master), and the thread holds no lock a worker could inherit held: it only sleeps and polls. A
worker forked while it runs gets the object without its thread and never touches it. Gunicorn reaps
every child of the master, this one included (`waitpid(-1)`), so its exit status is often lost: the
child logs its own reasons, and the supervisor only learns that it is gone.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from typing import Callable, Sequence

MAX_BACKOFF_S = 60.0
HEALTHY_RUN_S = 60.0


class Sidecar:
    def __init__(self, name: str, argv: Sequence[str], log: logging.Logger,
                 on_exit: Callable[[int], None] | None = None, stop_timeout_s: float = 3.0) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.on_exit = on_exit  # called with the pid of each run that ended (metrics clean-up)
        self.stop_timeout_s = stop_timeout_s
        self.starts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name=f"sidecar-{name}", daemon=True)

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def start(self) -> None:
        self._thread.start()

    def _supervise(self) -> None:
        failures = 0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                # close_fds=False lets subprocess use posix_spawn, which needs no error pipe: with
                # fork+exec, a worker Gunicorn forks (without exec) while this thread waits on that pipe
                # inherits its write end, and the wait never ends (seen: no restart after a kill -9).
                self._process = subprocess.Popen(self.argv, env=dict(os.environ), close_fds=False)
            except OSError as exc:
                self.log.error("%s: cannot start %s: %s", self.name, self.argv, exc)
            else:
                self.starts += 1
                self.log.info("%s started (pid %d)", self.name, self._process.pid)
                while self._process.poll() is None and not self._stop.wait(0.5):
                    pass
                if self._stop.is_set():
                    return
                code = self._process.returncode  # 0 also when Gunicorn reaped it first
                self.log.warning("%s (pid %d) exited%s", self.name, self._process.pid,
                                 f" with status {code}" if code else "")
                if self.on_exit is not None:
                    self.on_exit(self._process.pid)
            failures = 0 if time.monotonic() - started >= HEALTHY_RUN_S else failures + 1
            delay = min(MAX_BACKOFF_S, 2.0 ** max(0, failures - 1))
            self.log.info("%s: restarting in %.0fs", self.name, delay)
            self._stop.wait(delay)

    def stop(self) -> None:
        """Stop supervising and end the child (SIGTERM, then SIGKILL)."""
        self._stop.set()
        self._thread.join(timeout=5)
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if self.on_exit is not None:
            self.on_exit(process.pid)
