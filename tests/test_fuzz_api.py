"""schemathesis against a live Gunicorn server, from the document it serves at /openapi.json: every
operation, with the admin credentials and without any. Pass: no 5xx, no answer that breaks the document
(status, Content-Type, headers, body schema), schema-valid requests accepted and schema-violating ones
refused (tests/fuzz/schemathesis.toml lists the few exceptions and why), no worker lost, no unhandled
error in the server's log.

Sized for CI by default (the fuzzing phase, OCR_FUZZ_EXAMPLES cases per operation, a fixed seed);
`make fuzz-nightly` runs every phase (explicit examples, the coverage phase's boundary and negative
values, fuzzing) with many more cases and a new seed each time. Each run prints its case count, time and
seed; a failure prints schemathesis' report, with a `curl` that reproduces each failing case.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.contract import ADMIN_TOKEN
from tests.support.server import ROOT, RunningServer

CONFIG = ROOT / "tests" / "fuzz" / "schemathesis.toml"
SCHEMATHESIS = Path(sys.executable).with_name("st")
EXAMPLES = int(os.environ.get("OCR_FUZZ_EXAMPLES", "25"))
PHASES = os.environ.get("OCR_FUZZ_PHASES", "fuzzing")
SEED = os.environ.get("OCR_FUZZ_SEED", "16")  # "random": a new one, printed for reproduction
TIMEOUT_S = float(os.environ.get("OCR_FUZZ_TIMEOUT_S", "300"))


def _run(server: RunningServer, report: Path, headers: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    command = [str(SCHEMATHESIS), "--config-file", str(CONFIG), "run", f"{server.url}/openapi.json",
               "--url", server.url, "--max-examples", str(EXAMPLES), "--phases", PHASES, "--workers", "2",
               "--report", "json", "--report-json-path", str(report), "--output-truncate", "true",
               *(["--seed", SEED] if SEED != "random" else []), *headers]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=report.parent)
    return done, time.monotonic() - started


@pytest.mark.parametrize("credentials", ["admin", "none"])
def test_no_answer_breaks_the_contract(admin_server: RunningServer, credentials: str, tmp_path: Path,
                                       record_property: pytest.RecordProperty) -> None:
    workers, log_start = admin_server.worker_pids(), len(admin_server.log())
    headers = ["-H", f"Authorization: Bearer {ADMIN_TOKEN}"] if credentials == "admin" else []
    report = tmp_path / "schemathesis.json"
    done, elapsed = _run(admin_server, report, headers)
    summary = json.loads(report.read_text())
    cases = summary["test_cases"]
    line = (f"schemathesis ({credentials} credentials, phases {PHASES}, {EXAMPLES} per operation, seed "
            f"{summary['seed']}): {cases['generated']} cases on {summary['operations']['tested']} operations "
            f"in {elapsed:.0f} s")
    print(line)
    record_property("schemathesis", line)
    assert done.returncode == 0, f"{line}\n{done.stdout[-12000:]}\n{done.stderr[-2000:]}"
    assert summary["failures"] == [] and summary["errors"] == []
    assert summary["operations"]["tested"] == summary["operations"]["total"] >= 12
    assert cases["generated"] >= 12 * min(EXAMPLES, 5)  # it did send requests, to every operation
    assert admin_server.worker_pids() == workers, "a worker died or was replaced during the run"
    new_log = admin_server.log()[log_start:]
    assert "unhandled error" not in new_log and "Traceback" not in new_log, new_log[-4000:]
