"""The MLflow registry as the source of versions, against a real `mlflow server` (pinned, sqlite backend,
local artifact store) that the test session starts: `ocr-server models push`, and the sync's passes
(new versions copied verifiably, `@champion` as the pin, `@challenger` handed to the delivery hook, a
registry outage changing nothing, a transfer that does not match refused). The pods that run the sync
under Gunicorn are in tests/test_registry_pods.py.

Versions here are small real publishes (random bytes as network files, tests/governance_support.py):
the sync only moves and checks files, it never loads them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from server.governance.audit import AuditLog, read_audit
from server.governance.signing import sign_directory
from server.governance.verify import SignatureChecker, version_digest
from server.lifecycle.pins import PinStore
from server.lifecycle.statedir import StatePaths
from server.registry.candidates import NoDelivery
from server.registry.client import MlflowRegistry, RegistryVersion, redact
from server.registry.push import push
from server.registry.sync import ACTOR, Syncer
from server.registry.tags import TAG_DIGEST, card_from_tags, card_tags
from server.repository.card import ModelCard
from server.repository.layout import ModelRepository
from server.repository.manifest import read_manifest
from server.repository.publish import publish
from server.storage.locks import FileLock
from tests.governance_support import make_src, new_key, trust_entry
from tests.support.mlflow import MlflowServer
from tests.support.server import ROOT, free_port

CARD = {"trained_by": "ml-team@example.com",
        "training_data": {"id": "receipts-2026-03",
                          "sha256": "bd11687ddc3331b855b76450a55186b8b64f7c1617ab3220613e06aeb2b56155"},
        "evaluation": {"dataset": "sroie-dev", "metrics": {"cer": 0.066, "line.recall": 0.78}},
        "training_framework": {"name": "PaddleOCR", "version": "3.3.0"},
        "parent_version": "1.0.0-ppocrv4", "code_commit": "3f2c9ab", "notes": "fine-tuned on the March receipts"}


@pytest.fixture(autouse=True)
def _mlflow_client_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the sync process sets for its client (server.registry.client.limit_http_retries)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


class Lab:
    """A developer's repository that pushes, and one pod's repository and state that the sync fills."""

    def __init__(self, tmp_path: Path, server: MlflowServer, model: str) -> None:
        self.server = server
        self.model = model
        self.tmp = tmp_path
        self.dev = ModelRepository(tmp_path / "dev")
        self.registry = MlflowRegistry(server.url, model)
        self.pod = ModelRepository(tmp_path / "pod" / "models")
        self.state = StatePaths(tmp_path / "pod" / "state", "ppocr")
        self.audit_path = tmp_path / "pod" / "state" / "audit.log"
        self.syncer = Syncer(self.registry, self.pod, self.state, AuditLog(self.audit_path), NoDelivery(), poll_s=1.0)
        self.key = new_key(tmp_path / "keys", "release")

    def publish(self, version: str, card: dict | None = None, signed: bool = True) -> Path:
        path = publish(make_src(self.tmp / f"src-{version}"), self.dev, version,
                       card=ModelCard.from_json(card) if card else None)
        if signed:
            sign_directory(path, self.key.private_key)
        return path

    def push(self, version: str, **kwargs: object) -> RegistryVersion:
        return push(self.publish(version, **kwargs), self.registry, "ocr-tests").registered  # type: ignore[arg-type]

    def alias(self, alias: str, number: str | None) -> None:
        client = self.server.client()
        if number is None:
            client.delete_registered_model_alias(self.model, alias)
        else:
            client.set_registered_model_alias(self.model, alias, number)

    def status(self) -> dict:
        return json.loads(self.state.registry_file.read_text())

    def record(self, number: str) -> dict:
        return next(v for v in self.status()["versions"] if v["mlflow_version"] == number)

    def pin(self):
        return PinStore(self.state.pin_file).read().pin

    def sync(self) -> bool:
        ok = self.syncer.sync_once()
        self.syncer.write_status()
        return ok


@pytest.fixture()
def lab(tmp_path: Path, mlflow_server: MlflowServer, request: pytest.FixtureRequest) -> Lab:
    return Lab(tmp_path, mlflow_server, f"receipts-{request.node.name[:40]}".replace("[", "-").replace("]", ""))


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# -- without a server ---------------------------------------------------------------------------------
def test_the_card_travels_as_tags_and_back() -> None:
    card = ModelCard.from_json(CARD)
    tags = card_tags(card)
    assert tags["card.evaluation.metrics.cer"] == "0.066" and tags["card.training_data.id"] == "receipts-2026-03"
    assert tags["card.evaluation.metrics.line.recall"] == "0.78"
    assert card_from_tags({**tags, "ocr.version": "2.0.0"}) == card
    assert card_tags(None) == {} and card_from_tags({"ocr.version": "2.0.0"}) is None


def test_a_tracking_uri_password_never_reaches_logs() -> None:
    assert redact("https://ops:s3cret@mlflow.example.com:5000/") == "https://ops:***@mlflow.example.com:5000/"
    assert redact("http://mlflow.ml:5000") == "http://mlflow.ml:5000"
    # nor the status and the log through MLflow's own error messages, which quote the URL
    nowhere = Path("/nonexistent")
    syncer = Syncer(MlflowRegistry(f"http://ops:s3cret@127.0.0.1:{free_port()}", "m"), ModelRepository(nowhere),
                    StatePaths(nowhere, "ppocr"), AuditLog(nowhere / "audit.log"), NoDelivery(), 1.0)
    assert not syncer.sync_once()
    assert "s3cret" not in str(syncer.status.to_json()) and "ops:***@" in syncer.status.tracking_uri


# -- against the MLflow server ------------------------------------------------------------------------
def test_push_registers_the_files_and_the_card_and_is_idempotent(lab: Lab) -> None:
    version_dir = lab.publish("2.0.0-tuned", card=CARD)
    env = {**os.environ, "OCR_MODEL_REPO": str(lab.dev.root), "OCR_STATE_DIR": str(lab.tmp / "dev-state"),
           "OCR_MLFLOW_TRACKING_URI": lab.server.url, "OCR_MLFLOW_MODEL": lab.model}

    def cli_push(version: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "server.cli", "models", "push", version], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)

    first = cli_push("2.0.0-tuned")
    assert first.returncode == 0, first.stderr
    answer = json.loads(first.stdout.strip().splitlines()[-1])
    assert answer["created"] is True and answer["version_digest"] == version_digest(version_dir)

    registered = lab.server.client().get_model_version(lab.model, answer["mlflow_version"])
    tags = registered.tags
    assert tags["ocr.version"] == "2.0.0-tuned" and tags["ocr.pipeline"] == "ppocr"
    assert tags[TAG_DIGEST] == version_digest(version_dir)
    assert tags["ocr.signed"] == "true" and tags["ocr.key_id"] == json.loads(
        (version_dir / "model.sig").read_text())["verificationMaterial"]["publicKey"]["hint"]
    assert card_from_tags(tags) == read_manifest(version_dir).card == ModelCard.from_json(CARD)
    artifacts = {a.path for a in lab.server.client().list_artifacts(registered.run_id, "model")}
    assert {"model/manifest.json", "model/model.sig", "model/det", "model/cls", "model/rec"} <= artifacts

    again = cli_push("2.0.0-tuned")  # the same files: nothing new is registered
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.strip().splitlines()[-1]) | {"created": True} == answer
    assert len(lab.registry.versions()) == 1

    other = ModelRepository(lab.tmp / "other")  # same name, other files: refused
    publish(make_src(lab.tmp / "src-other"), other, "2.0.0-tuned")
    refused = subprocess.run([sys.executable, "-m", "server.cli", "models", "push", "2.0.0-tuned"], cwd=ROOT,
                             env={**env, "OCR_MODEL_REPO": str(other.root)}, capture_output=True, text=True,
                             timeout=300)
    assert refused.returncode == 1 and "versions are immutable" in refused.stderr, refused.stderr

    events = [e for e in read_audit(lab.tmp / "dev-state" / "audit.log") if e["action"] == "push"]
    assert [(e["result"], e["reason"][:22]) for e in events] == [
        ("ok", ""), ("ok", "already in the registr"), ("failed", "the registry already h")]
    assert (events[0]["mlflow_version"], events[0]["version_digest"]) == (answer["mlflow_version"],
                                                                         answer["version_digest"])


def test_new_versions_are_copied_as_they_were_pushed_and_verify(lab: Lab) -> None:
    first = lab.push("1.0.0")
    assert lab.sync()
    copied = lab.pod.version_dir("1.0.0")
    assert _tree(copied) == _tree(lab.dev.version_dir("1.0.0"))  # manifest and signature byte for byte
    trust = lab.tmp / "trust.pem"
    trust.write_text(trust_entry(lab.key))
    status = SignatureChecker(trust, None).check(copied, "ppocr")
    assert status.verified, status.reason
    assert lab.record(first.number) == {"mlflow_version": first.number, "version": "1.0.0", "state": "synced",
                                         "reason": "", "signed": True}

    second = lab.push("1.1.0", signed=False)
    # a model version that is not one of ours (no ocr.version tag) is left alone
    foreign = lab.server.client().create_model_version(lab.model, source=f"runs:/{first.run_id}/model",
                                                       run_id=first.run_id)
    # a later model version claiming a name the registry already holds is a conflict: the first one counts
    impostor = lab.server.client().create_model_version(
        lab.model, source=f"runs:/{second.run_id}/model", run_id=second.run_id,
        tags={"ocr.version": "1.0.0", "ocr.pipeline": "ppocr", TAG_DIGEST: second.tags[TAG_DIGEST]})
    assert lab.sync()
    assert lab.pod.version_names() == ["1.0.0", "1.1.0"]
    assert _tree(lab.pod.version_dir("1.0.0")) == _tree(lab.dev.version_dir("1.0.0"))
    assert lab.record(impostor.version) == {"mlflow_version": impostor.version, "version": "1.0.0",
                                            "state": "conflict", "reason": f"1.0.0 is already MLflow version "
                                            f"{first.number}", "signed": None}
    assert lab.record(second.number)["signed"] is False
    assert lab.record(foreign.version)["state"] == "skipped" and "ocr.version" in lab.record(foreign.version)["reason"]
    assert not [p for p in lab.pod.pipeline_dir.iterdir() if p.name.startswith(".staging")]

    publishes = [e for e in read_audit(lab.audit_path) if e["action"] == "publish"]
    assert [(e["actor"], e["version"], e["mlflow_version"]) for e in publishes] == [
        (ACTOR, "1.0.0", first.number), (ACTOR, "1.1.0", second.number)]
    assert publishes[0]["version_digest"] == version_digest(copied) and publishes[0]["signed"] is True
    assert lab.sync() and lab.pod.version_names() == ["1.0.0", "1.1.0"]  # nothing copied twice
    assert len([e for e in read_audit(lab.audit_path) if e["action"] == "publish"]) == 2


def test_champion_is_the_pin_and_challenger_goes_to_the_delivery_hook(lab: Lab) -> None:
    v1, v2 = lab.push("1.0.0"), lab.push("2.0.0")
    assert lab.sync() and lab.pin() is None  # no alias yet: the pod serves the highest, as without a registry

    lab.alias("champion", v1.number)
    lab.alias("challenger", v2.number)
    assert lab.sync()
    pin = lab.pin()
    assert (pin.version, pin.actor) == ("1.0.0", ACTOR)
    assert lab.status()["champion"] == {"mlflow_version": v1.number, "version": "1.0.0", "applied": True}
    challenger = lab.status()["challenger"]
    assert challenger["version"] == "2.0.0" and challenger["delivered"] is False, challenger

    lab.alias("champion", v2.number)
    assert lab.sync() and lab.pin().version == "2.0.0"
    # the registry wins over a pin set by hand on this machine while the alias names a version
    PinStore(lab.state.pin_file).write("1.0.0", "api:127.0.0.1")
    assert lab.sync() and (lab.pin().version, lab.pin().actor) == ("2.0.0", ACTOR)

    lab.alias("champion", None)  # the alias goes: so does the pin the sync wrote
    assert lab.sync() and lab.pin() is None
    PinStore(lab.state.pin_file).write("1.0.0", "api:127.0.0.1")  # and a hand-set pin then stays
    assert lab.sync() and lab.pin().actor == "api:127.0.0.1"

    pins = [(e["action"], e["version"], e.get("previous"), e.get("previous_actor"))
            for e in read_audit(lab.audit_path) if e["actor"] == ACTOR and e["action"] in {"pin", "unpin"}]
    assert pins == [("pin", "1.0.0", None, None), ("pin", "2.0.0", "1.0.0", ACTOR),
                    ("pin", "2.0.0", "1.0.0", "api:127.0.0.1"), ("unpin", "2.0.0", None, None)]


def test_a_copy_that_does_not_match_the_registry_is_refused(lab: Lab) -> None:
    good = lab.push("1.0.0")
    lab.server.client().set_model_version_tag(lab.model, good.number, TAG_DIGEST, "0" * 64)
    lab.alias("champion", good.number)
    assert lab.sync()
    record = lab.record(good.number)
    assert record["state"] == "failed" and "ocr.version_digest tag says" in record["reason"], record
    assert lab.pod.version_names() == [] and lab.pin() is None
    assert not [p for p in lab.pod.pipeline_dir.iterdir() if p.name.startswith(".staging")]
    assert lab.status()["champion"]["applied"] is False

    # a version on this machine with the same name and other files is a conflict, never overwritten
    lab.server.client().set_model_version_tag(lab.model, good.number, TAG_DIGEST, version_digest(
        lab.dev.version_dir("1.0.0")))
    publish(make_src(lab.tmp / "src-local"), lab.pod, "1.0.0")
    local = _tree(lab.pod.version_dir("1.0.0"))
    assert lab.sync()
    assert lab.record(good.number)["state"] == "conflict" and _tree(lab.pod.version_dir("1.0.0")) == local
    assert lab.pin() is None


def test_a_registry_outage_changes_nothing_and_the_sync_resumes(lab: Lab) -> None:
    """The registry unreachable (the MLflow client against a port nothing listens on: connection refused,
    as for a registry that is down; tests/test_registry_pods.py stops the real one under load)."""
    v1, v2 = lab.push("1.0.0"), lab.push("2.0.0")
    lab.alias("champion", v1.number)
    assert lab.sync() and lab.pin().version == "1.0.0"
    before = (_tree(lab.pod.root), lab.state.pin_file.read_bytes())

    reachable, lab.syncer.registry = lab.syncer.registry, MlflowRegistry(f"http://127.0.0.1:{free_port()}", lab.model)
    lab.alias("champion", v2.number)  # moved meanwhile: seen once the registry is back
    assert not lab.sync() and not lab.sync()
    status = lab.status()
    assert status["state"] == "failing" and status["consecutive_failures"] == 2
    assert "Connection refused" in status["error"], status["error"]
    assert status["last_success"] is not None and status["champion"]["version"] == "1.0.0"  # the last known
    assert (_tree(lab.pod.root), lab.state.pin_file.read_bytes()) == before

    lab.syncer.registry = reachable
    assert lab.sync()
    assert lab.status()["state"] == "ok" and lab.status()["consecutive_failures"] == 0
    assert lab.pin().version == "2.0.0"


def test_one_sync_per_machine(lab: Lab) -> None:
    lab.push("1.0.0")
    env = {**os.environ, "OCR_MODEL_REPO": str(lab.pod.root), "OCR_STATE_DIR": str(lab.state.root),
           "OCR_MLFLOW_TRACKING_URI": lab.server.url, "OCR_MLFLOW_MODEL": lab.model}
    lock = FileLock(lab.state.registry_lock)
    assert lock.try_acquire()
    try:
        held = subprocess.run([sys.executable, "-m", "server.cli", "models", "sync", "--once"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
    finally:
        lock.release()
    assert held.returncode == 3 and "another registry sync holds" in held.stderr, held.stderr
    assert lab.pod.version_names() == []
    free = subprocess.run([sys.executable, "-m", "server.cli", "models", "sync", "--once"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert free.returncode == 0, free.stderr
    assert lab.pod.version_names() == ["1.0.0"]
