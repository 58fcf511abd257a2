"""The supervisor the Gunicorn master runs its registry sync under (server/process/sidecar.py), with real
child processes: a child that dies is started again, and `stop` ends the one running. The sync under
a real master is in tests/test_registry_pods.py."""

from __future__ import annotations

import logging
import os
import sys

from server.process.sidecar import Sidecar
from tests.support.lifecycle import wait_for


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_child_that_exits_is_started_again_and_reported() -> None:
    ended: list[int] = []
    sidecar = Sidecar("short", [sys.executable, "-c", "pass"], logging.getLogger("test"), on_exit=ended.append)
    sidecar.start()
    try:
        wait_for(lambda: sidecar.starts >= 2 and len(ended) >= 1, 60, "the child to be started a second time")
    finally:
        sidecar.stop()
    assert len(set(ended)) == len(ended)  # one report per run, each its own process


def test_stop_ends_the_running_child() -> None:
    ended: list[int] = []
    sidecar = Sidecar("long", [sys.executable, "-c", "import time; time.sleep(600)"], logging.getLogger("test"),
                      on_exit=ended.append)
    sidecar.start()
    pid = wait_for(lambda: sidecar.pid, 60, "the child to start")
    sidecar.stop()
    assert not _alive(pid) and ended == [pid] and sidecar.starts == 1
