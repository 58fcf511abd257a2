"""`ocr-server audit verify` and `ocr-server auth hash-key`: the audit chain and API keys."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from server.cli.settings import settings_with


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from server.governance.audit import verify_chain

    settings = settings_with(args)
    path: Path = args.audit_log or settings.effective_audit_log
    try:
        report = verify_chain(path)
    except OSError as exc:
        print(f"ocr-server: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(report.message(path), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


def cmd_hash_key(args: argparse.Namespace) -> int:
    """Print the policy-file entry for an API key: read from stdin (so it stays out of the shell's
    history), or generated. Only the sha256 goes into the policy; a generated key is shown once."""
    from server.governance.access import generate_api_key, hash_api_key
    from server.governance.roles import parse_roles

    try:
        roles = sorted(r.value for r in parse_roles(args.role or [], "--role"))
    except ValueError as exc:
        print(f"ocr-server: {exc}", file=sys.stderr)
        return 2
    if args.generate:
        key = generate_api_key()
        print(f"# the API key (give it to its holder; it is not stored anywhere): {key}")
    else:
        key = sys.stdin.readline().strip()
        if not key:
            print("ocr-server: give the API key on stdin, or --generate one", file=sys.stderr)
            return 2
    print(f"- name: {args.name}\n  sha256: {hash_api_key(key)}\n  roles: [{', '.join(roles)}]")
    return 0


def add_parsers(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    audit = sub.add_parser("audit", help="the audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    audit_verify = audit_sub.add_parser("verify", help="check the audit log's hash chain (exit 1 naming the first "
                                                       "bad line)")
    audit_verify.add_argument("--audit-log", type=Path, help="the log to check (default: OCR_AUDIT_LOG's)")
    audit_verify.set_defaults(func=cmd_audit_verify)

    auth = sub.add_parser("auth", help="access control helpers")
    auth_sub = auth.add_subparsers(dest="auth_command", required=True)
    hash_key = auth_sub.add_parser("hash-key", help="print the policy entry (sha256) for an API key read from stdin")
    hash_key.add_argument("--generate", action="store_true", help="generate a new random key instead")
    hash_key.add_argument("--name", default="CHANGE-ME", help="the key's name in the policy and the audit log")
    hash_key.add_argument("--role", action="append", help="a role of the key (repeatable)")
    hash_key.set_defaults(func=cmd_hash_key)
