"""The settings a command runs with: the environment, with its flags laid over it."""

from __future__ import annotations

import argparse
import os

from server.config import Settings


def settings_with(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with the given flags laid over it (and exported for Gunicorn)."""
    flags = {
        "OCR_BIND": getattr(args, "bind", None),
        "OCR_WORKERS": getattr(args, "workers", None),
        "OCR_THREADS": getattr(args, "threads", None),
        "OCR_MODEL_REPO": getattr(args, "model_repo", None),
    }
    for name, value in flags.items():
        if value is not None:
            os.environ[name] = str(value)
    return Settings.from_env()
