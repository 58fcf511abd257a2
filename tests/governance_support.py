"""Support for the governance tests: real ECDSA keys on disk, trust-store files, small published versions,
the role table they must meet, an OIDC provider's keys and tokens (good and forged), and a real syslog
listener.

Versions here are small real publishes (random bytes as network files): signing and verification
only read files, so they do not need real weights; the server-level tests use real ones.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socketserver
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from server.governance.roles import Action, Role
from server.governance.syslog import SyslogTarget
from server.repository.layout import ModelRepository
from server.repository.manifest import SIGNATURE_NAME
from server.repository.publish import publish
from tests.support.server import ROOT

ISSUER = "https://login.example.com/realms/bank"
AUDIENCE = "ocr-server"

# Written out by hand, not derived from PERMISSIONS: this is the specification the table must meet.
# V viewer, S submitter, R releaser, A auditor, C client (admin may do everything).
EXPECTED = {
    Action.READ_MODELS: "VSRA",
    Action.READ_REPORTS: "VSRA",
    Action.PUBLISH: "S",
    Action.REQUEST_PROMOTION: "S",
    Action.ACTIVATE: "R",
    Action.ROLLBACK: "R",
    Action.UNPIN: "R",
    Action.PROMOTE: "R",
    Action.START_CANARY: "R",
    Action.ABORT_CANARY: "R",
    Action.READ_AUDIT: "A",
    Action.INFER: "C",
    Action.FEEDBACK: "C",
}
LETTER = {Role.VIEWER: "V", Role.SUBMITTER: "S", Role.RELEASER: "R", Role.AUDITOR: "A", Role.CLIENT: "C"}




def make_src(path: Path) -> Path:
    """A source folder shaped like a version: det/, cls/, rec/ with a dictionary."""
    for stage in ("det", "cls", "rec"):
        (path / stage).mkdir(parents=True)
        (path / stage / "inference.pdmodel").write_bytes(os.urandom(64))
        (path / stage / "inference.pdiparams").write_bytes(os.urandom(256))
    (path / "rec" / "keys.txt").write_text("a\nb\nc\n", encoding="utf-8")
    return path


@dataclass(frozen=True)
class KeyPair:
    private_path: Path
    public_path: Path
    private_key: ec.EllipticCurvePrivateKey

    @property
    def public_pem(self) -> str:
        return self.public_path.read_text()


def new_key(directory: Path, name: str, curve: ec.EllipticCurve | None = None) -> KeyPair:
    """An EC key pair written as PEM files (`NAME.key`, `NAME.pub`), as openssl would."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(curve or ec.SECP256R1())
    private_path = directory / f"{name}.key"
    private_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    public_path = directory / f"{name}.pub"
    public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    return KeyPair(private_path, public_path, key)


def trust_entry(key: KeyPair, pipelines: str = "ppocr", name: str | None = None) -> str:
    """One trust-store entry: the headers, then the PEM block."""
    return (f"Name: {name}\n" if name else "") + f"Pipelines: {pipelines}\n" + key.public_pem


def published(tmp_path: Path, version: str, repo: ModelRepository | None = None) -> Path:
    """A version published into `repo` (default: tmp_path/models) from fresh random stage files."""
    repo = repo or ModelRepository(tmp_path / "models")
    return publish(make_src(tmp_path / f"src-{version}"), repo, version)


# -- the OpenSSF model-signing CLI ----------------------------------------------------------------------

MODEL_SIGNING = ROOT / ".venv-modelsigning" / "bin" / "model_signing"


def require_model_signing_cli() -> None:
    """Skip without the CLI's venv (`make interop-setup`, which `make test` runs); in CI, fail."""
    if not MODEL_SIGNING.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{MODEL_SIGNING} is missing: CI must run `make interop-setup` (make test does)")
        pytest.skip(f"{MODEL_SIGNING} is missing: run `make interop-setup`")


def theirs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(MODEL_SIGNING), *args], capture_output=True, text=True, timeout=300)


def their_sign(version: Path, key: KeyPair) -> subprocess.CompletedProcess[str]:
    return theirs("sign", "key", str(version), "--signature", str(version / SIGNATURE_NAME),
                  "--private_key", str(key.private_path))


def their_verify(version: Path, key: KeyPair) -> subprocess.CompletedProcess[str]:
    return theirs("verify", "key", str(version), "--signature", str(version / SIGNATURE_NAME),
                  "--public_key", str(key.public_path))


# -- JWT ---------------------------------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Provider:
    """An OIDC provider's signing keys (RSA and EC) and its JWKS, exported to a file."""

    def __init__(self, directory: Path) -> None:
        self.rsa = rsa.generate_private_key(65537, 2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        keys = [json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.rsa.public_key())) | {"kid": "rsa-1", "use": "sig"},
                json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.ec.public_key())) | {"kid": "ec-1"}]
        self.jwks = directory / "jwks.json"
        self.jwks.write_text(json.dumps({"keys": keys}))
        self.rsa_public_pem = self.rsa.public_key().public_bytes(serialization.Encoding.PEM,
                                                                 serialization.PublicFormat.SubjectPublicKeyInfo)

    def claims(self, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300,
                  "groups": ["ocr-mlops", "unrelated"]}
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, alg: str = "RS256", kid: str = "rsa-1", **changes: Any) -> str:
        key = self.rsa if alg.startswith(("RS", "PS")) else self.ec
        return jwt.encode(self.claims(**changes), key, algorithm=alg, headers={"kid": kid})


def unsigned_token(claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}."


def hs256_with_public_key(claims: dict[str, Any], secret: bytes) -> str:
    """The algorithm-confusion attack: HS256 keyed with the provider's public key (which anyone has)."""
    signing_input = f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': 'rsa-1'}).encode())}." \
                    f"{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


# -- syslog ------------------------------------------------------------------------------------------------

class Listener:
    """A real syslog receiver on the loopback: UDP datagrams, or TCP with octet-counted frames."""

    def __init__(self, protocol: str) -> None:
        self.messages: list[str] = []
        self.received = threading.Condition()
        owner = self

        class Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                owner.add(self.request[0])

        class Tcp(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                while True:
                    length = b""
                    while not length.endswith(b" "):
                        char = self.rfile.read(1)
                        if not char:
                            return
                        length += char
                    owner.add(self.rfile.read(int(length)))

        server_class = socketserver.ThreadingUDPServer if protocol == "udp" else socketserver.ThreadingTCPServer
        server_class.daemon_threads = True
        self.server = server_class(("127.0.0.1", 0), Udp if protocol == "udp" else Tcp)
        self.target = SyslogTarget(protocol, "127.0.0.1", self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, data: bytes) -> None:
        with self.received:
            self.messages.append(data.decode("utf-8"))
            self.received.notify_all()

    def wait_for(self, count: int, timeout_s: float = 30.0) -> list[str]:
        with self.received:
            self.received.wait_for(lambda: len(self.messages) >= count, timeout_s)
            return list(self.messages)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
