"""Command-line options every benchmark shares (dataset, model repository, version, threads)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bench.scoring import DEFAULT_DATA

ROOT = Path(__file__).resolve().parent.parent


def add_common_args(parser: argparse.ArgumentParser, default_limit: int | None = None) -> None:
    parser.add_argument("--data", type=Path, default=None,
                        help=f"SROIE-layout dataset directory (default $OCR_BENCH_DATA or {DEFAULT_DATA})")
    parser.add_argument("--limit", type=int, default=default_limit, help="use only the first N receipts")
    parser.add_argument("--model-repo", type=Path, default=ROOT / "models", help="model repository")
    parser.add_argument("--version", default=None, help="model version (default: the highest installed)")
    parser.add_argument("--cpu-threads", type=int, default=None,
                        help="math-library threads for our pipeline (default: all cores, one worker)")


def data_dir(args: argparse.Namespace) -> Path:
    return args.data or Path(os.environ.get("OCR_BENCH_DATA") or DEFAULT_DATA)
