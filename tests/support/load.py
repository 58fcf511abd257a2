"""Load on a real server: client threads posting to `POST /v1/ocr`, every response recorded.

One client for every test and benchmark. A `LoadGenerator` either keeps posting until it is stopped
(load during a swap, a fault, a restart) or posts each body once (`once=True`: throughput and
latency). Each response is checked on the spot by a `check` that returns what is wrong with it (""
when nothing is), so a test can say afterwards exactly which requests failed and why.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import requests

# What is wrong with a response ("" when nothing is).
Check = Callable[[requests.Response], str]


def ok_status(response: requests.Response) -> str:
    return "" if response.status_code == 200 else f"HTTP {response.status_code}: {response.text[:300]}"


@dataclass
class Outcome:
    started: float  # time.monotonic()
    ended: float
    status: int | None
    version: str | None  # X-Model-Version of the response
    problem: str = ""  # empty when the response passed the check
    body: int = 0  # index of the body sent

    @property
    def seconds(self) -> float:
        return self.ended - self.started


class LoadGenerator:
    def __init__(self, url: str, bodies: list[bytes], check: Check = ok_status, clients: int = 8,
                 content_type: str = "image/png", once: bool = False, timeout: float = 300.0,
                 on_outcome: Callable[[Outcome], None] | None = None, new_connections: bool = False,
                 client_id: Callable[[int, int], str] | None = None) -> None:
        self.url = url
        self.bodies = bodies
        self.check = check
        self.clients = clients
        self.content_type = content_type
        self.once = once
        self.timeout = timeout
        self.on_outcome = on_outcome
        # A new connection per request (as many clients behind a balancer do): a kept-alive connection
        # stays with its worker, so a new or restarted worker would see no traffic.
        self.headers = {"Content-Type": content_type, **({"Connection": "close"} if new_connections else {})}
        self.client_id = client_id  # (client, request number) -> its X-Client-Id (canary routing); None: none
        self.outcomes: list[Outcome] = []
        self._inflight: dict[int, float] = {}  # client -> start of its request in flight
        self._next = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _take(self, client: int, sent: int) -> int | None:
        """The next body this client sends: each in turn, or (once) each body once across clients."""
        if not self.once:
            return (client + sent) % len(self.bodies)
        with self._lock:
            index, self._next = self._next, self._next + 1
        return index if index < len(self.bodies) else None

    def _client(self, index: int) -> None:
        session = requests.Session()
        sent = 0
        while not self._stop.is_set():
            body = self._take(index, sent)
            if body is None:
                break
            sent += 1
            started = time.monotonic()
            with self._lock:
                self._inflight[index] = started
            status = version = None
            headers = dict(self.headers)
            if self.client_id is not None:
                headers["X-Client-Id"] = self.client_id(index, sent)
            try:
                response = session.post(f"{self.url}/v1/ocr", data=self.bodies[body], headers=headers,
                                        timeout=self.timeout)
                status, version = response.status_code, response.headers.get("X-Model-Version")
                problem = self.check(response)
            except requests.RequestException as exc:
                problem = f"{type(exc).__name__}: {exc}"
                session = requests.Session()
            outcome = Outcome(started, time.monotonic(), status, version, problem, body)
            with self._lock:
                self.outcomes.append(outcome)
                del self._inflight[index]
            if self.on_outcome is not None:
                self.on_outcome(outcome)

    def start(self) -> "LoadGenerator":
        for i in range(self.clients):
            thread = threading.Thread(target=self._client, args=(i,), name=f"load-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def join(self, timeout: float | None = None) -> None:
        for thread in self._threads:
            thread.join(timeout=timeout)

    def stop(self) -> None:
        self._stop.set()
        self.join(timeout=self.timeout + 20)

    def run(self) -> float:
        """Start, wait until every client is done (with `once`, every body sent); the wall time it took."""
        began = time.monotonic()
        self.start().join()
        return time.monotonic() - began

    def finished_before(self, moment: float) -> bool:
        """Whether every request that started before `moment` has ended."""
        with self._lock:
            return all(started > moment for started in self._inflight.values())

    def between(self, start: float, end: float) -> list[Outcome]:
        """Ended requests that started within [start, end] (monotonic clock)."""
        with self._lock:
            return [o for o in self.outcomes if start <= o.started <= end]

    @contextmanager
    def window(self) -> Iterator["Window"]:
        """The requests sent during a `with` block (waits for those in flight to end on exit)."""
        window = Window(self, time.monotonic())
        yield window
        window.close()


@dataclass
class Window:
    load: LoadGenerator
    start: float
    end: float | None = None
    outcomes: list[Outcome] = field(default_factory=list)

    def close(self) -> None:
        self.end = time.monotonic()
        deadline = self.end + self.load.timeout + 20
        while not self.load.finished_before(self.end) and time.monotonic() < deadline:
            time.sleep(0.1)  # let the requests started in the window finish
        self.outcomes = self.load.between(self.start, self.end)

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.problem]

    def assert_clean(self, minimum: int = 1) -> None:
        assert self.outcomes and len(self.outcomes) >= minimum, f"only {len(self.outcomes)} requests ran"
        failed = self.failures()
        assert not failed, f"{len(failed)} of {len(self.outcomes)} requests failed, e.g. {[o.problem for o in failed[:5]]}"

    def versions(self) -> set[str]:
        return {o.version for o in self.outcomes if o.version}


def percentile(values: list[float], q: float) -> float:
    """The `q` quantile (0..1) of `values`, by linear interpolation (numpy's default); nan when empty."""
    import numpy as np

    return float(np.percentile(values, 100 * q)) if values else float("nan")
