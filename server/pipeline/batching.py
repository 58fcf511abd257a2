"""Cross-request batching of recognition: the line crops of concurrent requests in one worker share runs.

Triton's dynamic batcher is the model. A request hands its crops to the batcher and waits; a runner
thread takes every request waiting with it (a *round*), plans the round's crops into batches by width
bucket exactly as one request's crops are planned (`server.pipeline.rec.plan_batches`, so the input
shapes stay as few as without batching), runs them, and gives each request its own readings back in
its own order. Why: a request's crops leave part-filled buckets that run one crop at a time, and the
crops of requests running at the same time can fill them; a GPU wants batches larger than one page
gives (`max_lines`).

The wait is bounded: a round starts `wait_s` after its first request arrived, or at once when as many
requests wait as the worker has threads (no more can come). While a runner is busy, the requests that
arrive meanwhile queue and have already waited when it comes back, so the wait only costs anything
when recognition was idle. A failing batch fails the requests with crops in it and only those, each
with a `RecognitionBatchError` that says so. `close` takes no more work, finishes what is queued and
returns once no runner can touch the network again: the pipeline closes the batcher before its
sessions (a Paddle predictor must not run after its session closed).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, replace

import numpy as np

from server.pipeline.imageops import aspect_ratio
from server.pipeline.rec import Reading, TextRecognizer, plan_batches
from server.pipeline.types import RecSettings


class RecognitionBatchError(RuntimeError):
    """A recognition batch this request had crops in failed (its cause is the runtime's error)."""


class BatcherClosedError(RuntimeError):
    """Recognition was asked of a pipeline whose batcher has closed (its version was retired)."""


@dataclass(frozen=True)
class BatchPolicy:
    """How requests' crops are gathered (from `Settings`: OCR_REC_BATCH_WAIT_MS, OCR_REC_BATCH_MAX)."""

    wait_s: float  # how long a round waits for more requests after its first one arrived
    max_lines: int = 0  # crops in one network run; 0: the version's own batch size
    max_requests: int = 1  # requests that can wait at once (the worker's threads): a full round starts at once
    runners: int = 1  # rounds run at the same time (the stage's predictors, OCR_INFERENCE_CONCURRENCY)


def _plan_key(settings: RecSettings) -> tuple[object, ...]:
    """What batch planning reads: requests whose settings agree on it can share a round (the request
    options change only `drop_score`, which is applied after recognition)."""
    return settings.image_shape, settings.batch_size, settings.width_buckets, settings.max_batch_width


@dataclass
class _Job:
    crops: list[np.ndarray]
    settings: RecSettings
    arrived: float = field(default_factory=time.monotonic)
    future: Future[list[Reading]] = field(default_factory=Future)


class RecognitionBatcher:
    """Recognition for many request threads at once, through rounds (see the module docstring)."""

    def __init__(self, recognizer: TextRecognizer, policy: BatchPolicy) -> None:
        self._recognizer = recognizer
        self._policy = policy
        self._pending: list[_Job] = []
        self._closed = False
        self._changed = threading.Condition()
        self._runners = [threading.Thread(target=self._serve, name=f"rec-batcher-{n}", daemon=True)
                         for n in range(max(1, policy.runners))]
        for runner in self._runners:
            runner.start()

    def recognize(self, crops: list[np.ndarray], settings: RecSettings) -> list[Reading]:
        """Read each crop, sharing batches with other requests' crops; same contract as
        `TextRecognizer.recognize`."""
        if not crops:
            return []
        job = _Job(crops, settings)
        with self._changed:
            if self._closed:
                raise BatcherClosedError("recognition batcher closed: this pipeline's version was retired")
            self._pending.append(job)
            self._changed.notify_all()
        return job.future.result()

    def close(self) -> None:
        """Take no more work, finish the rounds queued, and return when no runner is left."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        for runner in self._runners:
            runner.join()

    def _serve(self) -> None:
        while (jobs := self._next_round()) is not None:
            self._run(jobs)

    def _next_round(self) -> list[_Job] | None:
        """The jobs of the next round, once its wait is over; None once closed and nothing is left."""
        with self._changed:
            while True:
                if not self._pending:
                    if self._closed:
                        return None
                    self._changed.wait()
                    continue
                deadline = self._pending[0].arrived + self._policy.wait_s
                left = deadline - time.monotonic()
                if left > 0 and not self._closed and len(self._pending) < self._policy.max_requests:
                    self._changed.wait(left)
                    continue  # another runner may have taken the round meanwhile
                key = _plan_key(self._pending[0].settings)
                jobs = [job for job in self._pending if _plan_key(job.settings) == key]
                self._pending = [job for job in self._pending if _plan_key(job.settings) != key]
                return jobs

    def _settings(self, settings: RecSettings) -> RecSettings:
        """The round's batch shape: `max_lines` crops a batch when set, the width budget scaled alike."""
        lines = self._policy.max_lines
        if not lines:
            return settings
        return replace(settings, batch_size=lines, max_batch_width=settings.max_batch_width * lines // settings.batch_size)

    def _run(self, jobs: list[_Job]) -> None:
        # Imported here, not at the top: this package is imported by the Gunicorn master (through
        # server.repository), which must not create metric files of its own (server.observability.multiprocess).
        from server.observability.metrics import REC_ROUND_LINES, REC_ROUND_REQUESTS

        crops = [crop for job in jobs for crop in job.crops]
        owner = [k for k, job in enumerate(jobs) for _ in job.crops]
        REC_ROUND_REQUESTS.observe(len(jobs))
        REC_ROUND_LINES.observe(len(crops))
        readings: list[Reading] = [("", 0.0)] * len(crops)
        failed: dict[int, BaseException] = {}
        settings = self._settings(jobs[0].settings)
        try:
            batches = plan_batches([aspect_ratio(crop) for crop in crops], settings)
        except Exception as exc:  # a crop recognition cannot take: fail the round, not the runner
            failed = dict.fromkeys(range(len(jobs)), exc)
            batches = []
        for width, chosen in batches:
            members = {owner[i] for i in chosen}
            if members <= failed.keys():
                continue  # every request it serves has failed already
            try:
                read = self._recognizer.read_batch([crops[i] for i in chosen], width, settings)
            except Exception as exc:  # the runtime's own error types; it fails this batch's requests
                failed.update((k, exc) for k in members if k not in failed)
                continue
            for i, reading in zip(chosen, read):
                readings[i] = reading
        start = 0
        for k, job in enumerate(jobs):
            end = start + len(job.crops)
            if k in failed:
                cause = failed[k]
                error = RecognitionBatchError(f"recognition failed in a batch shared by {len(jobs)} request(s): "
                                              f"{type(cause).__name__}: {cause}")
                error.__cause__ = cause
                job.future.set_exception(error)
            else:
                job.future.set_result(readings[start:end])
            start = end
