"""Faults and restarts under load, on one real server (2 workers x 2 threads, PP-OCRv4 on Paddle, 8
clients, each request on a new connection): a worker killed while idle, mid-request and mid-swap, a
worker crashing in native code (SIGSEGV), a worker stopped (SIGSTOP) past the timeout, a reload
(`kill -HUP`), the model repository's volume unmounted and mounted again, then a graceful stop during a
swap.

The tests run in this order on the same server (each leaves it serving with every worker ready, the
last one stops it). What may fail is stated per fault and counted; every other request must get a 200
with the page's text. After each fault the server's /metrics must agree with what the clients saw
(`Lab.assert_metrics`).

The repository is a bind mount of a directory (mounting needs root; without it the repository is the
plain directory and only the unmount test is skipped); the state directory lies outside it, as it
would on a separate volume.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.lifecycle import ADMIN_TOKEN, Admin, expect_versions, expected_text, load_image, publish_variant, \
    wait_for
from tests.support.load import LoadGenerator, Outcome
from tests.support.metrics import scrape, uncounted_answers
from tests.support.server import PADDLE_VERSION, RunningServer, gunicorn_server

CLIENTS = 8
# Gunicorn's worker timeout, short so that a stopped worker is replaced within the test.
TIMEOUT_S = 15
# Bound for a new worker to load and warm up its model while 8 clients keep both cores busy.
BOOT_BOUND_S = 300.0


class Lab:
    def __init__(self, server: RunningServer, expected: dict[str, str], volume: Path | None) -> None:
        self.server = server
        self.expected = expected
        self.volume = volume  # the directory bind-mounted as the repository; None: not mounted
        self.admin = Admin(server.url)
        self.earlier: list[Outcome] = []  # outcomes of the load generators stopped by `pause`
        self.load = self._start_load()
        self.paused = False

    def _start_load(self) -> LoadGenerator:
        return LoadGenerator(self.server.url, [load_image()], check=expect_versions(self.expected), clients=CLIENTS,
                             new_connections=True).start()

    def pause(self) -> None:
        """Stop the clients once the requests they have in flight are answered."""
        self.load.stop()
        self.earlier += self.load.outcomes
        self.paused = True

    def resume(self) -> None:
        self.load = self._start_load()
        self.paused = False

    def outcomes(self) -> list[Outcome]:
        return self.earlier if self.paused else self.earlier + self.load.outcomes

    def answered_after(self, moment: float, count: int) -> None:
        """Wait until `count` requests started after `moment` have been answered."""
        wait_for(lambda: len([o for o in self.outcomes() if o.started > moment]) >= count, BOOT_BOUND_S,
                 f"{count} requests after the fault")

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes() if o.problem]

    def signal_worker_until_replaced(self, sig: signal.Signals) -> tuple[int, float]:
        """Send `sig` to a worker under load and wait until a replacement serves: (its pid, when it was sent)."""
        victim = self.server.worker_pids()[0]
        sent_at = time.monotonic()
        os.kill(victim, sig)
        wait_for(lambda: victim not in self.server.worker_pids() and self.workers_serve(PADDLE_VERSION),
                 BOOT_BOUND_S, f"a replacement for the worker sent {sig.name} serving")
        return victim, sent_at

    def workers_serve(self, version: str) -> bool:
        workers = self.admin.models()["workers"]
        pids = self.server.worker_pids()
        return (len(pids) == 2 and sorted(w["pid"] for w in workers) == sorted(pids)
                and all(w["serving"] == version for w in workers))

    def metrics_dir(self) -> Path:
        found = re.search(r"prometheus multiprocess directory: (\S+)", self.server.log())
        assert found, "the master did not log its metrics directory"
        return Path(found.group(1))

    def assert_metrics(self, version: str, lost: int) -> None:
        """With the clients paused: /metrics counts every answer the clients got, by status and version,
        plus at most the `lost` requests a killed worker had counted but could not send (a request is
        counted when its response is built, so one in flight on a killed worker may or may not be); no
        request is in flight; the model-info series are those of the live workers, all on `version`."""
        self.pause()
        try:
            metrics = scrape(f"{self.server.url}/metrics")
            short, extra = uncounted_answers(metrics, self.outcomes())
            assert not short, f"answered vs counted: {short}"
            print(f"  metrics: {metrics.total('ocr_requests_total'):.0f} requests counted, "
                  f"{extra:.0f} of them not delivered (of {lost} lost)")
            assert 0 <= extra <= lost, extra
            assert metrics.total("ocr_inflight_requests") == 0  # a dead worker's in-flight count went with it
            info = [(int(labels["pid"]), labels["version"]) for labels, value in metrics.select("ocr_model_info")
                    if value == 1]
            assert sorted(info) == sorted((pid, version) for pid in self.server.worker_pids()), info
            # Below the exposition: no live gauge file of a process that is not a live worker.
            live = {int(path.stem.rsplit("_", 1)[1]) for path in self.metrics_dir().glob("gauge_live*_*.db")}
            assert live <= set(self.server.worker_pids()), (live, self.server.worker_pids())
        finally:
            self.resume()


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


def _unmount(target: Path) -> None:
    """Unmount as an operator would; a scan holding a file open for a moment makes it busy: retry."""
    for _ in range(20):
        if subprocess.run(["umount", str(target)], capture_output=True).returncode == 0:
            return
        time.sleep(0.5)
    subprocess.run(["umount", "-l", str(target)], check=True)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, default_version_dir: Path) -> Iterator[Lab]:
    from tests.support.server import copy_version

    base = tmp_path_factory.mktemp("faults")
    volume, root = base / "volume", base / "models"
    copy_version(default_version_dir, volume, PADDLE_VERSION)
    root.mkdir()
    mounted = os.geteuid() == 0 and _mount("--bind", str(volume), str(root))
    expected = {PADDLE_VERSION: expected_text(0)}
    env = {"OCR_ADMIN_TOKEN": ADMIN_TOKEN, "OCR_TIMEOUT": str(TIMEOUT_S), "OCR_STATE_DIR": str(base / "state")}
    try:
        with gunicorn_server(root if mounted else volume, tmp_path_factory.mktemp("logs"), workers=2, threads=2,
                             env=env) as server:
            lab = Lab(server, expected, volume if mounted else None)
            lab.answered_after(0.0, CLIENTS)
            assert "[ERROR]" not in server.log(), server.log()[-3000:]  # e.g. metrics left per worker by an import
            try:
                yield lab
            finally:
                lab.load.stop()
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(root)], check=False)


def test_an_idle_worker_killed_loses_no_request(lab: Lab) -> None:
    lab.pause()
    victim = lab.server.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)  # holding no request
    wait_for(lambda: victim not in lab.server.worker_pids(), 60, "the master to reap the killed worker")
    resumed_at = time.monotonic()
    before = len(lab.failures())
    lab.resume()  # 8 clients while the replacement loads: the other worker takes them all meanwhile
    wait_for(lambda: lab.workers_serve(PADDLE_VERSION), BOOT_BOUND_S, "a replacement worker serving")
    replaced_at = time.monotonic()
    lab.answered_after(replaced_at, 2 * CLIENTS)

    lost = lab.failures()[before:]
    during = [o for o in lab.outcomes() if resumed_at < o.started < replaced_at]
    print(f"kill -9 of an idle worker, then {CLIENTS} clients: {len(during)} answered while its replacement "
          f"loaded, {len(lost)} failed")
    assert not lost, [o.problem for o in lost][:5]
    assert {o.version for o in lab.outcomes() if o.started > replaced_at} == {PADDLE_VERSION}
    lab.assert_metrics(PADDLE_VERSION, lost=0)


def test_a_worker_killed_mid_request_loses_only_the_requests_it_held(lab: Lab) -> None:
    before = len(lab.failures())
    _, killed_at = lab.signal_worker_until_replaced(signal.SIGKILL)
    replaced_at = time.monotonic()
    lab.answered_after(replaced_at, 2 * CLIENTS)

    lost = lab.failures()[before:]
    print(f"kill -9 of a worker under {CLIENTS} clients: {len(lost)} requests failed (held by it)")
    # Only requests the victim had accepted fail: they started before the kill, and it held at most
    # one per client. The replacement answers nothing before its model is ready (no 503).
    assert all(o.started < killed_at for o in lost), [o.problem for o in lost]
    assert len(lost) <= CLIENTS, [o.problem for o in lost]
    assert lab.workers_serve(PADDLE_VERSION)
    assert {o.version for o in lab.outcomes() if o.started > replaced_at} == {PADDLE_VERSION}
    lab.assert_metrics(PADDLE_VERSION, lost=len(lost))


def test_a_worker_crashing_in_native_code_logs_the_python_stack_of_every_thread(lab: Lab) -> None:
    """A SIGSEGV (as Paddle's kernels die) is answered like a kill -9, and the worker's log says which
    Python code every thread was running (faulthandler, server/process/gunicorn_config.py)."""
    before = len(lab.failures())
    victim, crashed_at = lab.signal_worker_until_replaced(signal.SIGSEGV)
    lab.answered_after(time.monotonic(), CLIENTS)

    lost = lab.failures()[before:]
    log = lab.server.log()
    print(f"SIGSEGV in a worker under {CLIENTS} clients: {len(lost)} requests failed (held by it)")
    assert f"Worker (pid:{victim}) was sent SIGSEGV" in log  # it died by the signal, as before
    dump = log[log.index("Fatal Python error: Segmentation fault"):]
    # The main thread (Gunicorn's loop) and the others: request threads, the lifecycle, the predictors'.
    assert dump.count("Thread 0x") >= 3, dump[:3000]
    assert "gunicorn" in dump and "threading.py" in dump, dump[:3000]
    assert all(o.started < crashed_at for o in lost), [o.problem for o in lost]
    lab.assert_metrics(PADDLE_VERSION, lost=len(lost))


def test_a_stopped_worker_is_replaced_after_the_timeout(lab: Lab) -> None:
    before = len(lab.failures())
    # SIGSTOP: hung in native code, as far as the master can tell.
    victim, stopped_at = lab.signal_worker_until_replaced(signal.SIGSTOP)
    replaced_at = time.monotonic()
    lab.answered_after(replaced_at, 2 * CLIENTS)

    lost = lab.failures()[before:]
    print(f"SIGSTOP of a worker under {CLIENTS} clients: replaced after {replaced_at - stopped_at:.0f} s "
          f"(timeout {TIMEOUT_S} s), {len(lost)} requests failed (held by it)")
    assert f"WORKER TIMEOUT (pid:{victim})" in lab.server.log()
    assert all(o.started < stopped_at for o in lost), [o.problem for o in lost]
    assert len(lost) <= CLIENTS, [o.problem for o in lost]
    lab.assert_metrics(PADDLE_VERSION, lost=len(lost))


def test_a_reload_under_load_answers_every_request(lab: Lab) -> None:
    before = len(lab.failures())
    old = set(lab.server.worker_pids())
    hup_at = time.monotonic()
    os.kill(lab.server.process.pid, signal.SIGHUP)
    wait_for(lambda: not old & set(lab.server.worker_pids()) and lab.workers_serve(PADDLE_VERSION),
             BOOT_BOUND_S, "the old workers to hand over to new ones")
    replaced_at = time.monotonic()
    lab.answered_after(replaced_at, CLIENTS)

    assert not lab.failures()[before:], [o.problem for o in lab.failures()[before:]][:5]
    during = [o for o in lab.outcomes() if hup_at < o.ended < replaced_at]
    print(f"kill -HUP under {CLIENTS} clients: {len(during)} requests answered in the {replaced_at - hup_at:.0f} s "
          "of the reload, 0 failed")
    # The old workers kept serving while the new ones loaded (without the hand-over nobody would accept).
    assert len(during) >= CLIENTS
    assert "serving until they do" in lab.server.log()
    assert lab.workers_serve(PADDLE_VERSION)
    lab.assert_metrics(PADDLE_VERSION, lost=0)


def test_a_worker_killed_mid_swap_is_replaced_by_one_serving_the_new_version(
        lab: Lab, tmp_path: Path, default_version_dir: Path) -> None:
    version = "1.0.1-ppocrv4"
    lab.expected[version] = expected_text(0)
    before = len(lab.failures())
    publish_variant(default_version_dir, Path(lab.server.env["OCR_MODEL_REPO"]), version, 0, tmp_path)
    loading = wait_for(lambda: [w["pid"] for w in lab.admin.models()["workers"] if w["loading"] == version],
                       BOOT_BOUND_S, f"a worker loading {version}", interval=0.2)
    killed_at = time.monotonic()
    os.kill(loading[0], signal.SIGKILL)  # holding the machine's load lock, half-way through a load
    wait_for(lambda: loading[0] not in lab.server.worker_pids() and lab.workers_serve(version), BOOT_BOUND_S,
             f"every worker, the replacement included, to serve {version}")
    replaced_at = time.monotonic()
    lab.answered_after(replaced_at, 2 * CLIENTS)

    lost = lab.failures()[before:]
    print(f"kill -9 of a worker loading a swap under {CLIENTS} clients: {len(lost)} requests failed (held by it)")
    assert all(o.started < killed_at for o in lost), [o.problem for o in lost]
    assert len(lost) <= CLIENTS, [o.problem for o in lost]
    assert {o.version for o in lab.outcomes() if o.started > replaced_at} == {version}
    lab.assert_metrics(version, lost=len(lost))


def test_the_repository_volume_unmounted_and_mounted_again(
        lab: Lab, tmp_path: Path, default_version_dir: Path) -> None:
    """Serving goes on from memory while the volume is gone, each worker says so once (no restart, no
    crash loop), and once it is back a version published on it is served."""
    if lab.volume is None:
        pytest.skip("bind-mounting the repository needs root")
    root = Path(lab.server.env["OCR_MODEL_REPO"])
    version = "1.0.2-ppocrv4"
    lab.expected[version] = expected_text(0)
    pids = sorted(lab.server.worker_pids())
    before = len(lab.failures())
    gone = "serving continues from memory"
    _unmount(root)
    try:
        assert not (root / "ppocr").exists()
        wait_for(lambda: lab.server.log().count(gone) >= 2, 120, "both workers to notice the repository is gone")
        error = wait_for(lambda: lab.admin.models()["repository_error"], 60, "the listing to report it")
        assert "cannot list" in error and "No such file or directory" in error, error
        lab.answered_after(time.monotonic(), 2 * CLIENTS)  # served while it is gone
    finally:
        assert _mount("--bind", str(lab.volume), str(root))
    wait_for(lambda: lab.server.log().count("the model repository is readable again") >= 2, 120,
             "both workers to read the repository again")
    assert lab.admin.models()["repository_error"] is None
    publish_variant(default_version_dir, root, version, 0, tmp_path)
    wait_for(lambda: lab.workers_serve(version), BOOT_BOUND_S, f"every worker to serve {version}")
    published_at = time.monotonic()
    lab.answered_after(published_at, CLIENTS)

    lost = lab.failures()[before:]
    print(f"repository unmounted and mounted again under {CLIENTS} clients: {len(lost)} failed, "
          f"{lab.server.log().count(gone)} 'gone' lines")
    assert not lost, [o.problem for o in lost][:5]
    assert lab.server.log().count(gone) == 2  # once per worker, not once per pass
    assert sorted(lab.server.worker_pids()) == pids  # nobody crashed or restarted
    assert {o.version for o in lab.outcomes() if o.started > published_at} == {version}
    lab.assert_metrics(version, lost=0)


def test_a_graceful_stop_during_a_swap_logs_no_error(lab: Lab, tmp_path: Path, default_version_dir: Path) -> None:
    """SIGTERM to the master while a worker loads a new version: every worker exits 0, nothing aborts."""
    version = "1.0.3-ppocrv4"
    lab.expected[version] = expected_text(0)
    publish_variant(default_version_dir, Path(lab.server.env["OCR_MODEL_REPO"]), version, 0, tmp_path)

    def one_swapped_one_loading() -> bool:
        workers = lab.admin.models()["workers"]
        return any(w["serving"] == version for w in workers) and any(w["loading"] == version for w in workers)

    wait_for(one_swapped_one_loading, BOOT_BOUND_S, "a swap done and the next one loading", interval=0.2)
    workers = lab.server.worker_pids()
    offset = len(lab.server.log())
    code = lab.server.stop(timeout=120)
    lab.load.stop()

    log = lab.server.log()[offset:]
    assert code == 0, log[-3000:]
    for pid in workers:
        assert f"Worker exiting (pid: {pid})" in log
    for bad in ("terminate called", "SIGABRT", "exited with code", "Traceback", "[ERROR]"):
        assert bad not in log, log[log.find(bad) - 2000:log.find(bad) + 500]
