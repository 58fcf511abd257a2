"""What a canary costs: client latency and server memory with the stable version alone, with a canary
taking a share of clients, and with a shadow reading a share of requests - side by side in one run.

Starts the real server (Gunicorn) on a copy of the default version, publishes the same weights as a
candidate (so any difference is the canary machinery's, not the model's), and cycles the phases
`--rounds` times under `--clients` threads posting one rendered page, each request a new client id:

    stable   no rollout
    canary   POST /v1/models/2.0.0/canary {"percent": P}         (each worker holds both versions)
    shadow   POST /v1/models/2.0.0/canary {"shadow_percent": P}  (the candidate reads P % again, unseen)

The judge is off (`OCR_ROLLOUT_JUDGE_S=0`) so that nothing ends a phase early. Between phases the
rollout is aborted and the candidate's files republished as a new version (an aborted version stays
rejected). Reports per phase: requests, failures, p50/p99 latency, the server's total RSS (median and
peak) and each worker's median RSS. Run from the repository root after `make models`:

    .venv/bin/python bench/canary_cost.py --phase-s 60 --rounds 2

Writes bench/results/canary_cost.json (and prints it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.swap import DEFAULT_VERSION_DIR, RssSampler, synthetic_page  # noqa: E402
from server.repository.layout import ModelRepository  # noqa: E402
from server.repository.publish import publish  # noqa: E402
from tests.support.lifecycle import Admin, wait_converged, wait_for  # noqa: E402
from tests.support.load import LoadGenerator, percentile  # noqa: E402
from tests.support.server import gunicorn_server  # noqa: E402

TOKEN = "bench-canary"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--percent", type=float, default=25.0, help="canary and shadow share")
    parser.add_argument("--phase-s", type=float, default=60.0, help="measured time of each phase")
    parser.add_argument("--rounds", type=int, default=2, help="times the three phases are cycled")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "canary_cost.json")
    args = parser.parse_args()
    if not (DEFAULT_VERSION_DIR / "manifest.json").exists():
        parser.error(f"{DEFAULT_VERSION_DIR} is missing: run `make models` first")

    work = Path(tempfile.mkdtemp(prefix="bench-canary-"))
    repo = ModelRepository(work / "models")
    publish(DEFAULT_VERSION_DIR, repo, "1.0.0", created_by="bench/canary_cost.py")
    env = {"OCR_ADMIN_TOKEN": TOKEN, "OCR_MODEL_POLL_S": "1", "OCR_MODEL_DEBOUNCE_S": "0.3",
           "OCR_MODEL_SETTLE_S": "1", "OCR_ROLLOUT_JUDGE_S": "0"}
    phases: dict[str, list[dict[str, object]]] = {"stable": [], "canary": [], "shadow": []}
    with gunicorn_server(repo.root, work, workers=args.workers, threads=args.threads, env=env,
                         ready_timeout=600) as server:
        admin = Admin(server.url, TOKEN)
        workers = server.worker_pids()
        wait_converged(admin, workers, "1.0.0", 600)
        assert admin.activate("1.0.0").status_code == 202
        sampler = RssSampler(server, workers)
        sampler.start()
        load = LoadGenerator(server.url, [synthetic_page()], clients=args.clients,
                             client_id=lambda client, sent: f"bench-{client}-{sent}").start()
        time.sleep(20)  # warm-up
        candidate = 1
        for _ in range(args.rounds):
            for phase in ("stable", "canary", "shadow"):
                if phase != "stable":
                    candidate += 1
                    version = f"{candidate}.0.0"
                    publish(DEFAULT_VERSION_DIR, repo, version, created_by="bench/canary_cost.py")
                    wait_for(lambda: admin.version(version), 120, f"{version} to be listed")
                    started = (admin.canary(version, percent=args.percent) if phase == "canary"
                               else admin.canary(version, shadow_percent=args.percent))
                    assert started.status_code == 202, started.text
                    wait_for(lambda: sorted((admin.models()["rollout"] or {}).get("workers", [])) == list(
                        range(args.workers)), 600, f"every worker to hold {version}")
                begin = time.monotonic()
                time.sleep(args.phase_s)
                end = time.monotonic()
                outcomes = load.between(begin, end)
                values = [o.seconds for o in outcomes if not o.problem]
                rss = [(total, per) for t, total, per in sampler.samples if begin <= t <= end]
                phases[phase].append({
                    "requests": len(outcomes), "failures": sum(1 for o in outcomes if o.problem),
                    "p50_s": round(percentile(values, 0.5), 3), "p99_s": round(percentile(values, 0.99), 3),
                    "rss_total_median_mb": round(statistics.median(t for t, _ in rss) / 1024),
                    "rss_total_peak_mb": round(max(t for t, _ in rss) / 1024),
                    "rss_worker_median_mb": [round(statistics.median(p[w] for _, p in rss) / 1024) for w in workers],
                })
                print(phase, phases[phase][-1], flush=True)
                if phase != "stable":
                    aborted = admin.abort(version, "bench phase over")
                    assert aborted.status_code == 200, aborted.text
                    wait_for(lambda: all(w["canary"] is None for w in admin.models()["workers"]), 120,
                             "the candidate to be dropped")
                    time.sleep(5)  # its memory is given back once its last request ends
        load.stop()
        sampler.stop.set()
        sampler.join()
    report = {"command": " ".join(["bench/canary_cost.py", *sys.argv[1:]]),
              "machine": {"cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg()},
              "config": {"workers": args.workers, "threads": args.threads, "clients": args.clients,
                         "percent": args.percent, "phase_s": args.phase_s, "rounds": args.rounds},
              "phases": phases}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all(p["failures"] == 0 for runs in phases.values() for p in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
