"""`ocr-server models push / sync`: versions to and from an MLflow Model Registry."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from server.cli.settings import settings_with


def cmd_push(args: argparse.Namespace) -> int:
    """Register a local version in the MLflow registry (OCR_MLFLOW_TRACKING_URI, OCR_MLFLOW_MODEL)."""
    from server.governance.audit import audit_log_from_settings
    from server.registry.client import MlflowRegistry, RegistryError, redact
    from server.registry.push import PushError, push
    from server.repository.layout import ModelRepository, VersionNameError
    from server.repository.publish import default_publisher

    settings = settings_with(args)
    uri = args.tracking_uri or settings.mlflow_tracking_uri
    model = args.model or settings.mlflow_model
    if not uri or not model:
        print("ocr-server: name the registry: OCR_MLFLOW_TRACKING_URI and OCR_MLFLOW_MODEL (or --tracking-uri, "
              "--model)", file=sys.stderr)
        return 2
    audit = audit_log_from_settings(settings)
    actor = f"cli:{default_publisher()}"
    try:
        version_dir = ModelRepository(settings.model_repo, settings.pipeline_name).version_dir(args.version)
        if not version_dir.is_dir():
            raise PushError(f"{version_dir} is not a version of this repository")
        pushed = push(version_dir, MlflowRegistry(uri, model), settings.mlflow_experiment)
    except (PushError, RegistryError, VersionNameError, OSError) as exc:
        audit.append("push", actor=actor, version=args.version, result="failed", reason=str(exc),
                     registry=redact(uri), mlflow_model=model)
        print(f"ocr-server: cannot push {args.version}: {exc}", file=sys.stderr)
        return 1
    audit.append("push", actor=actor, version=pushed.version, version_digest=pushed.digest,
                 reason="" if pushed.created else "already in the registry", registry=redact(uri),
                 mlflow_model=model, mlflow_version=pushed.registered.number)
    print(json.dumps({"version": pushed.version, "mlflow_model": model, "mlflow_version": pushed.registered.number,
                      "version_digest": pushed.digest, "created": pushed.created, "tags": pushed.registered.tags}))
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    """One registry sync pass in the foreground (the server runs it for ever; see server.registry)."""
    from server.registry.process import main as sync_main

    settings_with(args)
    return sync_main(once=True)


def add_parsers(models_sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    pushing = models_sub.add_parser("push", help="register a version of the repository in the MLflow registry: "
                                                 "its files as artifacts, its model card as tags")
    pushing.add_argument("version", metavar="VERSION")
    pushing.add_argument("--model-repo", type=Path)
    pushing.add_argument("--tracking-uri", help="the MLflow tracking server (OCR_MLFLOW_TRACKING_URI)")
    pushing.add_argument("--model", help="the registered model (OCR_MLFLOW_MODEL)")
    pushing.set_defaults(func=cmd_push)
    syncing = models_sub.add_parser("sync", help="copy the registry's versions into the repository and follow "
                                                 "@champion, once (the server does it continuously)")
    syncing.add_argument("--once", action="store_true", required=True, help="one pass, then exit (1 if it failed)")
    syncing.add_argument("--model-repo", type=Path)
    syncing.set_defaults(func=cmd_sync)
