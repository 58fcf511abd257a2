"""Watcher: tell the controller quickly that the repository or the pin changed.

inotify (through watchdog) gives changes within a fraction of a second, but it is only a fast path:
it misses changes on NFS and on Kubernetes volume symlink swaps, and a watch dies with its directory.
So the controller also rescans on a timer, and this watcher re-arms itself: a supervisor thread checks
every `check_s` that the observer and its emitters are alive and that each watched path is still the
directory it was armed on (same device and inode); if not, it rebuilds the observer as soon as the path
exists again and reports a change, since anything may have happened while it was blind (Triton #6534:
after one failure, polling stopped seeing changes - here no failure stops detection).

Only events that can change a decision are reported (`relevant`): reading model files, writing the
audit log or the workers' state must not wake every worker.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Callable

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from server.lifecycle.statedir import StatePaths
from server.repository.layout import ModelRepository

log = logging.getLogger(__name__)

# Opening and reading files (IN_OPEN, IN_CLOSE_NOWRITE) is not a change.
EVENT_TYPES = [DirCreatedEvent, DirDeletedEvent, DirModifiedEvent, DirMovedEvent, FileClosedEvent,
               FileCreatedEvent, FileDeletedEvent, FileModifiedEvent, FileMovedEvent]


class _Forward(FileSystemEventHandler):
    def __init__(self, relevant: Callable[[str], bool], on_change: Callable[[str], None]) -> None:
        self._relevant = relevant
        self._on_change = on_change

    def on_any_event(self, event: FileSystemEvent) -> None:
        for path in (event.src_path, getattr(event, "dest_path", "")):
            path = os.fsdecode(path)
            if path and self._relevant(path):
                self._on_change(f"{event.event_type} {path}")
                return


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino)


class RepositoryWatcher:
    """Watch `paths` recursively; call `on_change(reason)` for relevant events and after re-arming."""

    def __init__(
        self,
        paths: list[Path],
        relevant: Callable[[str], bool],
        on_change: Callable[[str], None],
        check_s: float = 1.0,
    ) -> None:
        self.paths = paths
        self._handler = _Forward(relevant, on_change)
        self._on_change = on_change
        self._check_s = check_s
        self._observer: Observer | None = None  # type: ignore[valid-type]
        self._armed: dict[Path, tuple[int, int]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rearmed = 0  # times the observer was rebuilt after a failure (for the API and tests)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._supervise, name="model-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._teardown()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def armed(self) -> bool:
        return self._observer is not None

    def _healthy(self) -> bool:
        observer = self._observer
        if observer is None or not observer.is_alive():
            return False
        if not all(emitter.is_alive() for emitter in observer.emitters):
            return False
        return all(_identity(path) == identity for path, identity in self._armed.items()) and \
            len(self._armed) == len(self.paths)

    def _teardown(self) -> None:
        observer, self._observer = self._observer, None
        self._armed = {}
        if observer is not None:
            try:
                observer.stop()
                observer.join(timeout=5)
            except Exception:  # a broken observer must not stop us from building a new one
                log.exception("stopping the file watcher failed")

    def _arm(self) -> bool:
        identities = {path: _identity(path) for path in self.paths}
        if any(identity is None for identity in identities.values()):
            return False
        observer = Observer()
        try:
            for path in self.paths:
                observer.schedule(self._handler, str(path), recursive=True, event_filter=EVENT_TYPES)
            observer.start()
        except Exception as exc:  # e.g. inotify watch limit reached, directory removed meanwhile
            log.warning("cannot watch %s (%s); rescans continue", ", ".join(map(str, self.paths)), exc)
            try:
                observer.stop()
            except Exception:
                pass
            return False
        self._observer = observer
        self._armed = identities  # type: ignore[assignment]
        return True

    def _supervise(self) -> None:
        armed_before = False
        while not self._stop.is_set():
            try:
                if not self._healthy():
                    if self._observer is not None:
                        log.warning("lost the watch on %s; re-arming when it is back (rescans continue)",
                                    ", ".join(map(str, self.paths)))
                    self._teardown()
                    if self._arm():
                        if armed_before:
                            self.rearmed += 1
                            log.info("watching %s again", ", ".join(map(str, self.paths)))
                        armed_before = True
                        self._on_change("watcher armed")  # anything may have changed while blind
            except Exception:  # the supervisor itself must never die
                log.exception("file watcher supervision failed; retrying")
            self._stop.wait(self._check_s)
        self._teardown()


def watched_paths(repo: ModelRepository, state: StatePaths) -> list[Path]:
    """The directories to watch: the repository, and the state directory when it lies elsewhere."""
    root = repo.root.absolute()
    base = state.base.absolute()
    return [root] if base.is_relative_to(root) else [root, base]


def decision_inputs(repo: ModelRepository, state: StatePaths) -> Callable[[str], bool]:
    """Whether a changed path can change what a worker serves: a version directory, the pin, the
    rollout, a verdict."""
    pin_file = state.pin_file.absolute()
    rollout_file = state.rollout_file.absolute()
    verdicts_dir = state.verdicts_dir.absolute()
    pipeline_dir = repo.pipeline_dir.absolute()

    def relevant(raw: str) -> bool:
        path = Path(raw)
        if path in (pin_file, rollout_file):
            return True
        if path.parent == verdicts_dir:
            return path.suffix == ".json" and not path.name.startswith(".")
        if path == pipeline_dir:
            return True
        if path.is_relative_to(pipeline_dir):
            return not path.relative_to(pipeline_dir).parts[0].startswith(".")
        return False

    return relevant
