"""Reading a governance YAML file (the access policy, the revocation list): its data and its sha256.

Both are re-read when they change and their digest goes to the audit log, so each is read once as
bytes, parsed from those bytes and hashed from the same bytes: the digest names what was parsed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml


def read_yaml(path: Path, what: str, error: type[Exception]) -> tuple[Any, str]:
    """The file's data (an empty file is `{}`) and the sha256 of its bytes; `error` names `what` and
    `path` when the file cannot be read or is not YAML."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(raw) or {}
    except yaml.YAMLError as exc:
        raise error(f"{path} is not valid YAML: {exc}") from exc
    return data, hashlib.sha256(raw).hexdigest()
