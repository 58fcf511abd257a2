"""Manager: which loaded version serves, and when a retired one may be freed.

Every request takes one `ModelHandle` for its whole life (`with manager.acquire() as model:`), so it
runs det, cls and rec of one version even if a swap happens half-way. A swap only moves the "active"
reference; the old handle is retired and closed by whoever drops its last reference - the swap itself
if it was idle, otherwise the last request still using it. Memory therefore holds at most the versions
that are serving or still finishing requests.

During a canary (`server.lifecycle.rollout`) a second handle, the candidate, takes the requests whose
client key falls in its share (`acquire_routed`); it is retired like any other when the rollout ends.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator

from server.lifecycle.loader import LoadedModel
from server.lifecycle.memory import release_freed_memory
from server.lifecycle.rollout import in_canary


class NotReadyError(RuntimeError):
    """No version has been loaded and warmed up yet."""


class ModelHandle:
    """A loaded model with a reference count; closed once retired and unreferenced."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self._refs = 0
        self._retired = False
        self._closed = False
        self._closed_event = threading.Event()
        self._lock = threading.Lock()

    def _take(self) -> None:
        with self._lock:
            self._refs += 1

    def _drop(self) -> None:
        with self._lock:
            self._refs -= 1
            close = self._retired and self._refs == 0 and not self._closed
            self._closed |= close
        if close:
            self._close()

    def retire(self) -> None:
        with self._lock:
            self._retired = True
            close = self._refs == 0 and not self._closed
            self._closed |= close
        if close:
            self._close()

    def _close(self) -> None:
        try:
            self.model.close()
        finally:
            self._closed_event.set()

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until the last request using this retired model has finished and it is freed."""
        return self._closed_event.wait(timeout)

    @property
    def closed(self) -> bool:
        return self._closed


class ModelManager:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: ModelHandle | None = None
        self._retired: list[ModelHandle] = []
        self._candidate: ModelHandle | None = None
        self._candidate_percent = 0.0

    @contextmanager
    def acquire(self) -> Iterator[LoadedModel]:
        """The active model, held for the duration of the `with` block."""
        with self.acquire_routed(None) as (model, _):
            yield model

    @contextmanager
    def acquire_routed(self, client_key: str | None) -> Iterator[tuple[LoadedModel, bool]]:
        """(the model for `client_key`'s requests, whether it is the canary candidate), held for the block;
        without a key, or without a canary, the active model."""
        with self._lock:
            handle, canary = self._active, False
            if handle is None:
                raise NotReadyError("no model version is ready yet")
            candidate = self._candidate
            if candidate is not None and client_key is not None and in_canary(client_key, self._candidate_percent):
                handle, canary = candidate, True
            handle._take()
        try:
            yield handle.model, canary
        finally:
            handle._drop()

    @contextmanager
    def hold_candidate(self) -> Iterator[LoadedModel | None]:
        """The canary candidate (None without one), held for the block: shadow readings."""
        with self._lock:
            handle = self._candidate
            if handle is not None:
                handle._take()
        try:
            yield handle.model if handle is not None else None
        finally:
            if handle is not None:
                handle._drop()

    def set_candidate(self, model: LoadedModel | None, percent: float = 0.0) -> ModelHandle | None:
        """Make `model` the canary with `percent` of the client keys (None: no canary); returns the
        candidate it replaced, now retired."""
        new = ModelHandle(model) if model is not None else None
        with self._lock:
            old, self._candidate, self._candidate_percent = self._candidate, new, percent
            if old is not None:
                self._retired.append(old)
        if old is not None:
            old.retire()
        return old

    def set_candidate_share(self, percent: float) -> None:
        with self._lock:
            self._candidate_percent = percent

    @property
    def candidate(self) -> LoadedModel | None:
        handle = self._candidate
        return handle.model if handle is not None else None

    def activate(self, model: LoadedModel) -> ModelHandle | None:
        """Make `model` the one new requests get; returns the handle it replaced, now retired (it is
        closed by the last request still holding it, or here if none does)."""
        new = ModelHandle(model)
        with self._lock:
            old, self._active = self._active, new
            if old is not None:
                self._retired.append(old)
        if old is not None:
            old.retire()
        return old

    def drain(self, old: ModelHandle, timeout_s: float, stop: threading.Event) -> tuple[bool, float]:
        """Wait until the retired `old` is freed by its last request (or `timeout_s` passes, or `stop` is
        set), then give its memory back to the OS; (whether it was freed, seconds waited)."""
        started = time.monotonic()
        closed = False
        while not stop.is_set() and time.monotonic() - started < timeout_s:
            if old.wait_closed(0.5):
                closed = True
                break
        if closed:
            release_freed_memory()
        return closed, time.monotonic() - started

    def draining(self) -> list[LoadedModel]:
        """Retired models still held by requests."""
        with self._lock:
            self._retired = [handle for handle in self._retired if not handle.closed]
            return [handle.model for handle in self._retired]

    @property
    def active(self) -> LoadedModel | None:
        handle = self._active
        return handle.model if handle is not None else None

    @property
    def ready(self) -> bool:
        return self._active is not None

    def shutdown(self) -> None:
        with self._lock:
            old, self._active = self._active, None
            candidate, self._candidate = self._candidate, None
        for handle in (old, candidate):
            if handle is not None:
                handle.retire()
