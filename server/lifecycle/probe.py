"""Open a version's networks in a throw-away process before a serving worker does.

Paddle Inference does not always fail politely: a damaged `inference.pdmodel` makes
`create_predictor` die with SIGSEGV (measured here with random bytes in place of the program). In a
serving worker that would kill every request in flight, and Gunicorn's replacement worker would try
the same version again. So a version whose network files have never opened on this machine is first
opened in a child process; a crash there becomes a rejection with a reason, and serving goes on.

The probe opens each stage with the worker's own runtime options and runs nothing; the in-process
load that follows still verifies, warms up and gates. Network files already opened by an approved
version (same sha256) skip the probe: versions that only change settings or dictionaries cost nothing.

    python -m server.lifecycle.probe '{"version_dir": ..., "stages": [{"dir": ..., "runtime": ...}], "options": {...}}'
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from server.observability.multiprocess import ENV_VAR as METRICS_DIR_VAR
from server.repository.manifest import Manifest
from server.runtime import RuntimeOptions


class ProbeError(RuntimeError):
    """The networks cannot be opened; the message says why."""


class ProbeCrash(ProbeError):
    """The runtime died opening the networks: the files are damaged in a way it cannot report."""


def network_digest(manifest: Manifest) -> str:
    """Digest of every stage's network files (dictionaries excluded: they cannot crash the runtime)."""
    dictionaries = {spec.dict for spec in manifest.stages.values() if spec.dict}
    dirs = tuple(spec.dir.rstrip("/") + "/" for spec in manifest.stages.values())
    parts = sorted(f"{rel}={sha}" for rel, sha in manifest.files.items()
                   if rel.startswith(dirs) and rel not in dictionaries)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def probe_networks(version_dir: Path, manifest: Manifest, options: RuntimeOptions, timeout_s: float) -> None:
    """Open every stage of the version, each on the runtime its manifest entry names, in a child
    process; raise ProbeError (ProbeCrash when the runtime died) if that fails."""
    request = {
        "version_dir": str(version_dir),
        "stages": [{"dir": spec.dir, "runtime": spec.runtime} for spec in manifest.stages.values()],
        "options": asdict(options) | {"concurrency": 1},
    }
    # Not the workers' metrics directory: nobody reads a probe's metrics, and the gauges its imports
    # create would stay there as files of a process that is not a worker (never marked dead).
    env = {key: value for key, value in os.environ.items() if key != METRICS_DIR_VAR}
    try:
        done = subprocess.run([sys.executable, "-m", "server.lifecycle.probe", json.dumps(request)],
                              capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired as exc:
        raise ProbeError(f"opening the networks took longer than {timeout_s:.0f}s (probe process killed)") from exc
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        raise ProbeCrash(f"opening the networks crashed the runtime ({name}): the model files are damaged")
    if done.returncode != 0:
        message = done.stdout.strip().splitlines()[-1:] or done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise ProbeError(f"cannot open the networks: {message[0]}")


def main() -> int:
    from server.runtime import open_session

    request = json.loads(sys.argv[1])
    options = RuntimeOptions(**request["options"])
    for stage in request["stages"]:
        try:
            open_session(Path(request["version_dir"]) / stage["dir"], options, stage["runtime"]).close()
        except Exception as exc:  # report any failure to the parent as one line
            print(f"{stage['dir']}: {type(exc).__name__}: {exc}".replace("\n", " ")[:500])
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
