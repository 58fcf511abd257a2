"""The Gunicorn worker class: gthread, with a restart that never leaves the socket to workers still loading.

On `kill -HUP` (and on `TTIN` then `TTOU`, one worker at a time) Gunicorn forks the new workers and
sends SIGTERM to the old ones at once. A new worker only accepts connections once its first model is
loaded and warmed up (`gunicorn_config.post_worker_init`), so if the old ones stopped straight away
nobody would accept for the length of a load. An old worker told to stop therefore keeps serving while
a younger sibling (a worker of the same master, started after it) has not yet reached its first model,
for at most `OCR_BOOT_WAIT_S`, then stops as gthread does (finishing the requests it holds). A second
SIGTERM (a stop of the whole server during a restart) stops it at once.

"Reached its first model" is read from the worker board (`server.lifecycle.workers`): a sibling with
no entry that serves a version is still loading.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gunicorn.workers.gthread import ThreadWorker

from server.config import Settings

if TYPE_CHECKING:  # imported for real in the worker only: the master must not import prometheus_client
    from server.lifecycle.workers import WorkerBoard  # before its metrics directory is set (on_starting)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a process, from /proc/PID/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[19])  # fields 3 and 22 of proc(5)


def younger_siblings(pid: int, master: int) -> list[int]:
    """The master's other live children started after `pid` (Gunicorn forks them from its main thread)."""
    mine = _stat(pid)
    try:
        children = [int(child) for child in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
    except OSError:
        return []
    found = []
    for child in children:
        stat = _stat(child)
        if child != pid and mine is not None and stat is not None and stat[0] != "Z" and stat[1] > mine[1]:
            found.append(child)
    return found


class HandoverWorker(ThreadWorker):
    """A gthread worker that, told to stop, keeps serving until its younger siblings can."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._settings = Settings.from_env()
        self._handover_s = self._settings.boot_wait_s
        self._handing_over = False
        self._board: WorkerBoard | None = None

    def siblings_loading(self) -> list[int]:
        if self._board is None:
            from server.lifecycle.statedir import StatePaths
            from server.lifecycle.workers import WorkerBoard

            self._board = WorkerBoard(StatePaths(self._settings.effective_state_dir,
                                                 self._settings.pipeline_name).workers_dir)
        serving = {state.pid for state in self._board.live() if state.serving is not None}
        return [pid for pid in younger_siblings(os.getpid(), self.ppid) if pid not in serving]

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.alive and not self._handing_over and self.siblings_loading():
            self._handing_over = True
            threading.Thread(target=self._hand_over, args=(sig,), name="handover", daemon=True).start()
            return
        super().handle_exit(sig, frame)

    def _hand_over(self, sig: int) -> None:
        waiting = self.siblings_loading()
        self.log.info("asked to stop while workers %s load their first model: serving until they do (%d s at most)",
                      waiting, self._handover_s)
        deadline = time.monotonic() + self._handover_s
        while self.alive and waiting and time.monotonic() < deadline:
            time.sleep(0.5)
            waiting = self.siblings_loading()
        if waiting:
            self.log.warning("workers %s still load after %d s: stopping anyway", waiting, self._handover_s)
        super().handle_exit(sig, None)
