"""`ocr-server serve`: check the governance files, then become Gunicorn."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from server.cli.settings import settings_with
from server.config import Settings


def _check_governance_files(settings: Settings) -> str | None:
    """Why the access policy, trust store or revocation list cannot be used (None if they can): found
    here, before Gunicorn starts, rather than as workers that fail to boot."""
    from server.governance.access import Authorizer
    from server.governance.policy import PolicyError
    from server.governance.trust import TrustConfigError
    from server.governance.verify import SignatureChecker

    try:
        Authorizer.from_settings(settings)
        SignatureChecker.from_settings(settings)
    except (PolicyError, TrustConfigError) as exc:
        return str(exc)
    return None


def cmd_serve(args: argparse.Namespace) -> int:
    settings = settings_with(args)
    problem = _check_governance_files(settings)
    if problem is not None:
        print(f"ocr-server: configuration error: {problem}", file=sys.stderr)
        return 2
    os.environ.update(settings.as_env())
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:server.process.gunicorn_config"]
    os.execv(sys.executable, argv)
    return 0  # not reached


def add_parsers(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    serve = sub.add_parser("serve", help="serve OCR over HTTP with Gunicorn")
    serve.add_argument("--bind", help="HOST:PORT (OCR_BIND, default 0.0.0.0:8000)")
    serve.add_argument("--workers", type=int, help="worker processes (OCR_WORKERS, default 2)")
    serve.add_argument("--threads", type=int, help="threads per worker (OCR_THREADS, default 4)")
    serve.add_argument("--model-repo", type=Path, help="model repository (OCR_MODEL_REPO, default ./models)")
    serve.set_defaults(func=cmd_serve)
