"""The Helm chart, its rendered manifests and the Dockerfile, checked as strictly as a machine without a
cluster allows.

- `helm lint --strict` with each values file, and the chart's values.schema.json on every render;
- `helm template` for each values file, the output validated against the Kubernetes 1.33 OpenAPI
  schemas by `kubernetes-validate --strict` (unknown fields are errors), except the two Prometheus
  Operator kinds, which it has no schema for: the PrometheusRule is checked to be
  deploy/prometheus-alerts.yml itself and run through promtool, the ServiceMonitor against the Service
  it selects;
- `checkov` (offline) on the rendered manifests and on the Dockerfile, `hadolint` on the Dockerfile:
  no finding, and only the skips written, with their reasons, in the chart and the Dockerfile;
- what the templates derive: workers from the CPU limit, the grace period from Gunicorn's, the
  probes, the writable mounts, the model source;
- a broken value fails: a string replica count and a missing limit, at each layer that should catch it.

The tools live in .venv-deploy (`make deploy-tools`; promtool is Debian's `prometheus`). Without them
these tests skip, unless OCR_REQUIRE_DEPLOY_TOOLS=1 (CI's .ci/run sets it), which makes a missing tool
a failure.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

import server.observability.metrics as metrics
from server.config import Settings
from tests.support.server import ROOT

CHART = ROOT / "deploy" / "helm" / "ocr-server"
VALUES_FILES = ["values.yaml", "values-cpu.yaml", "values-gpu.yaml"]
KUBERNETES_VERSION = "1.33.0"  # the target
OLDEST_KUBERNETES = "1.30.0"  # Chart.yaml's kubeVersion
ALERTS = ROOT / "deploy" / "prometheus-alerts.yml"
ADAPTER_VALUES = ROOT / "deploy" / "helm" / "prometheus-adapter-values.yaml"
DOCKERFILE = ROOT / "Dockerfile"
NAMESPACE = "ocr"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
TOOLS_BIN = ROOT / ".venv-deploy" / "bin"
REQUIRED = os.environ.get("OCR_REQUIRE_DEPLOY_TOOLS") == "1"


def tool(name: str) -> str:
    """The path of a checker: .venv-deploy's, else PATH's; missing skips, or fails where required."""
    local = TOOLS_BIN / name
    path = str(local) if local.is_file() else shutil.which(name)
    if path is None:
        message = f"{name} is not installed (make deploy-tools; promtool: apt-get install prometheus)"
        if REQUIRED:
            pytest.fail(message + " and OCR_REQUIRE_DEPLOY_TOOLS=1")
        pytest.skip(message)
    return path


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=300)


def helm_template(*args: str, values: str = "values.yaml") -> subprocess.CompletedProcess[str]:
    return run(tool("helm"), "template", "ocr", str(CHART), "--namespace", NAMESPACE,
               "-f", str(CHART / values), *args)


def render(*args: str, values: str = "values.yaml") -> list[dict[str, Any]]:
    result = helm_template(*args, values=values)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    matches = [doc for doc in docs if doc["kind"] == kind]
    assert len(matches) == 1, f"{len(matches)} {kind} documents"
    return matches[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def env(docs: list[dict[str, Any]]) -> dict[str, str]:
    return {item["name"]: item.get("value", "<from>") for item in container(docs)["env"]}


def write_docs(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def kubernetes_validate(path: Path, version: str = KUBERNETES_VERSION) -> subprocess.CompletedProcess[str]:
    return run(tool("kubernetes-validate"), "--strict", "-k", version, str(path))


def checkov(directory: Path, framework: str) -> dict[str, Any]:
    """checkov's JSON report for one framework, offline."""
    result = run(tool("checkov"), "--skip-download", "--compact", "-o", "json",
                 "--framework", framework, "-d", str(directory))
    assert result.returncode in (0, 1), result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    assert len(reports) == 1, reports
    results = reports[0]["results"]
    for key in ("passed_checks", "failed_checks", "skipped_checks", "parsing_errors"):
        results.setdefault(key, [])
    assert results["parsing_errors"] == [], results["parsing_errors"]
    return reports[0]


def failed_ids(report: dict[str, Any]) -> set[str]:
    return {check["check_id"] for check in report["results"]["failed_checks"]}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each values file rendered once, into a directory of its own (checkov scans a directory)."""
    out = {}
    for values in VALUES_FILES:
        directory = tmp_path_factory.mktemp(values.replace(".", "-"))
        result = helm_template(values=values)
        assert result.returncode == 0, result.stderr
        (directory / "manifests.yaml").write_text(result.stdout)
        out[values] = directory / "manifests.yaml"
    return out


def docs_of(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


# ---- the tools' verdicts ----------------------------------------------------------------------------

@pytest.mark.parametrize("values", VALUES_FILES)
def test_helm_lint_strict(values: str) -> None:
    result = run(tool("helm"), "lint", "--strict", str(CHART), "-f", str(CHART / values))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


@pytest.mark.parametrize("version", [KUBERNETES_VERSION, OLDEST_KUBERNETES])
@pytest.mark.parametrize("values", VALUES_FILES)
def test_manifests_match_the_kubernetes_schemas(values: str, version: str, rendered: dict[str, Path],
                                                tmp_path: Path) -> None:
    docs = docs_of(rendered[values])
    builtin = [doc for doc in docs if doc["kind"] not in CRD_KINDS]
    assert {doc["kind"] for doc in docs} - {doc["kind"] for doc in builtin} == CRD_KINDS
    result = kubernetes_validate(write_docs(tmp_path / "builtin.yaml", builtin), version)
    assert result.returncode == 0, result.stdout + result.stderr
    passed = re.findall(r"passed for resource (\S+) against version", result.stdout + result.stderr)
    assert len(passed) == len(builtin), result.stdout + result.stderr
    assert not re.search(r"^(WARN|ERROR)", result.stdout + result.stderr, re.MULTILINE), result.stdout + result.stderr


def test_checkov_finds_nothing_in_the_manifests(rendered: dict[str, Path]) -> None:
    """One scan of every render, and of one with the image pinned by digest: no failed check; the one
    skip is the chart's annotation with its reason, present only while no digest is set."""
    directory = rendered["values.yaml"].parent.parent / "all-renders"
    directory.mkdir(exist_ok=True)
    for values, path in rendered.items():
        shutil.copy(path, directory / f"{values}.manifests.yaml")
    write_docs(directory / "digest.manifests.yaml", render("--set", "image.digest=sha256:" + "0" * 64))
    report = checkov(directory, "kubernetes")
    assert report["results"]["failed_checks"] == [], [
        (c["check_id"], c["resource"], c["file_path"]) for c in report["results"]["failed_checks"]]
    assert {c["file_path"].lstrip("/") for c in report["results"]["passed_checks"]} == {
        p.name for p in directory.iterdir()}
    skipped = report["results"]["skipped_checks"]
    assert {c["check_id"] for c in skipped} == {"CKV_K8S_43"}, skipped
    assert all("image.digest" in c["check_result"]["suppress_comment"] for c in skipped)
    assert not [c for c in skipped if c["file_path"].endswith("digest.manifests.yaml")]


def test_a_digest_pins_the_image_without_the_skip() -> None:
    docs = render("--set", "image.digest=sha256:" + "0" * 64)
    assert "annotations" not in one(docs, "Deployment")["metadata"]
    assert container(docs)["image"] == "ocr-server@sha256:" + "0" * 64
    assert container(docs)["imagePullPolicy"] == "IfNotPresent"
    assert container(render())["imagePullPolicy"] == "Always"  # a tag can move


def test_hadolint_dockerfile() -> None:
    result = run(tool("hadolint"), "--no-color", "--failure-threshold", "info", str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_checkov_dockerfile(tmp_path: Path) -> None:
    shutil.copy(DOCKERFILE, tmp_path / "Dockerfile")
    report = checkov(tmp_path, "dockerfile")
    assert report["results"]["failed_checks"] == [], report["results"]["failed_checks"]
    assert {c["check_id"] for c in report["results"]["skipped_checks"]} <= {"CKV_DOCKER_7"}


# ---- a broken value fails the checks ----------------------------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    (["--set-string", "replicaCount=two", "--set", "autoscaling.enabled=false"], "at '/replicaCount': got string, want integer"),
    (["--set", "resources.limits.cpu=null"], "at '/resources/limits': missing property 'cpu'"),
    (["--set", "resources.limits=null"], "at '/resources': missing property 'limits'"),
    (["--set", "modelSource=s3"], "at '/modelSource'"),
    (["--set", "modelVolume.existingClaim="], "at '/modelVolume/existingClaim': minLength"),
    (["--set", "modelSource=mlflow"], "at '/mlflow/trackingUri': minLength"),
])
def test_broken_values_are_refused_by_the_chart(args: list[str], message: str) -> None:
    for check in (helm_template(*args), run(tool("helm"), "lint", "--strict", str(CHART), *args)):
        assert check.returncode != 0
        assert message in check.stdout + check.stderr, check.stdout + check.stderr


def test_clusters_older_than_the_chart_supports_are_refused() -> None:
    result = helm_template("--kube-version", "1.29.0")
    assert result.returncode != 0 and "kubeVersion" in result.stderr, result.stderr
    assert helm_template("--kube-version", OLDEST_KUBERNETES).returncode == 0


def test_a_string_replica_count_fails_kubernetes_validate(rendered: dict[str, Path], tmp_path: Path) -> None:
    """Past the chart's schema (a hand-edited manifest), the Kubernetes schema still refuses it."""
    docs = [copy.deepcopy(doc) for doc in docs_of(rendered["values.yaml"]) if doc["kind"] not in CRD_KINDS]
    one(docs, "Deployment")["spec"]["replicas"] = "2"
    result = kubernetes_validate(write_docs(tmp_path / "broken.yaml", docs))
    assert result.returncode != 0
    assert "'2' is not of type 'integer'" in result.stdout + result.stderr, result.stdout + result.stderr


def test_missing_limits_fail_checkov(rendered: dict[str, Path], tmp_path: Path) -> None:
    docs = [copy.deepcopy(doc) for doc in docs_of(rendered["values.yaml"])]
    del container(docs)["resources"]["limits"]
    write_docs(tmp_path / "broken.yaml", docs)
    assert {"CKV_K8S_11", "CKV_K8S_13"} <= failed_ids(checkov(tmp_path, "kubernetes"))  # CPU, memory limits


# ---- what the templates derive ----------------------------------------------------------------------

@pytest.mark.parametrize(("cpu", "workers"), [("4", 4), ("2", 2), ("1500m", 1), ("2500m", 2), ("500m", 1), ("3.9", 3)])
def test_workers_follow_the_cpu_limit(cpu: str, workers: int) -> None:
    docs = render("--set-string", f"resources.limits.cpu={cpu},resources.requests.cpu={cpu}")
    assert env(docs)["OCR_WORKERS"] == str(workers)
    assert env(docs)["OCR_DEVICE"] == "cpu" and "OCR_CPU_THREADS" not in env(docs)  # the server derives it
    hpa = one(docs, "HorizontalPodAutoscaler")
    inflight = next(m for m in hpa["spec"]["metrics"] if m["type"] == "Pods")
    assert inflight["pods"]["target"]["averageValue"] == str(workers)  # one request in flight per worker


def test_workers_on_gpu_follow_the_gpus() -> None:
    docs = render("--set", "gpu.count=2,gpu.workersPerGpu=3", values="values-gpu.yaml")
    assert env(docs)["OCR_WORKERS"] == "6" and env(docs)["OCR_GPU_IDS"] == "0,1"
    assert env(docs)["OCR_DEVICE"] == "gpu"
    assert container(docs)["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert "nvidia.com/gpu" not in container(render())["resources"]["limits"]


def test_explicit_workers_win() -> None:
    assert env(render("--set", "server.workers=3"))["OCR_WORKERS"] == "3"


def test_termination_grace_covers_the_graceful_stop() -> None:
    docs = render()
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert env(docs)["OCR_GRACEFUL_TIMEOUT"] == str(Settings().graceful_timeout_s)  # chart default = server's
    pre_stop = container(docs)["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert spec["terminationGracePeriodSeconds"] == pre_stop + Settings().graceful_timeout_s + 5
    docs = render("--set", "server.gracefulTimeoutSeconds=90,server.preStopSeconds=15")
    assert env(docs)["OCR_GRACEFUL_TIMEOUT"] == "90"
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 110


def test_probes_wait_for_the_model_then_watch_the_process() -> None:
    c = container(render())
    assert c["startupProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600  # README, "Kubernetes": first load
    liveness = c["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 120


def test_read_only_root_with_scratch_where_the_server_writes() -> None:
    docs = render()
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    c = container(docs)
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert f"USER {spec['securityContext']['runAsUser']}:{spec['securityContext']['runAsGroup']}" in DOCKERFILE.read_text()
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    e = env(docs)
    for path in (e["OCR_STATE_DIR"], e["OCR_METRICS_DIR"], "/tmp"):
        assert "emptyDir" in volumes[mounts[path]["name"]] and not mounts[path].get("readOnly"), path
    assert volumes[mounts[e["OCR_METRICS_DIR"]]["name"]]["emptyDir"]["medium"] == "Memory"
    # volume mode: the shared repository is read-only and nothing is installed into it
    models = mounts[e["OCR_MODEL_REPO"]]
    assert models["readOnly"] is True and volumes[models["name"]]["persistentVolumeClaim"]["readOnly"] is True
    assert e["OCR_INSTALL_DEFAULT"] == "0"


def test_mlflow_source_sets_the_registry_variables_and_an_empty_repository() -> None:
    docs = render("--set", "modelSource=mlflow,mlflow.trackingUri=http://mlflow.ml:5000,mlflow.model=receipts-ocr")
    e = env(docs)
    assert (e["OCR_MODEL_SOURCE"], e["OCR_MLFLOW_TRACKING_URI"], e["OCR_MLFLOW_MODEL"]) == (
        "mlflow", "http://mlflow.ml:5000", "receipts-ocr")
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    models = next(m for m in container(docs)["volumeMounts"] if m["mountPath"] == e["OCR_MODEL_REPO"])
    assert not models.get("readOnly")
    assert "emptyDir" in next(v for v in spec["volumes"] if v["name"] == models["name"])
    assert len(spec["containers"]) == 1  # no sidecar container: the Gunicorn master runs the sync
    assert "envFrom" not in container(docs)
    with_secret = render("--set", "modelSource=mlflow,mlflow.trackingUri=http://m,mlflow.model=m,"
                                  "mlflow.credentialsSecret=mlflow-token")
    assert container(with_secret)["envFrom"] == [{"secretRef": {"name": "mlflow-token"}}]


def test_every_variable_the_chart_sets_is_a_setting() -> None:
    known = {f.metadata["env"] for f in fields(Settings)}
    for values, extra in [("values.yaml", []), ("values-gpu.yaml", []),
                          ("values.yaml", ["--set", "modelSource=mlflow,mlflow.trackingUri=http://m,mlflow.model=m",
                                           "--set", "server.adminTokenSecret.name=ocr-admin"])]:
        unknown = set(env(render(*extra, values=values))) - known
        assert not unknown, f"{values} sets variables the server does not read: {unknown}"


def test_metrics_scrape_reaches_the_master_exporter() -> None:
    docs = render()
    service, monitor = one(docs, "Service"), one(docs, "ServiceMonitor")
    ports = {p["name"]: p for p in container(docs)["ports"]}
    assert env(docs)["OCR_METRICS_BIND"].rpartition(":")[2] == str(ports["metrics"]["containerPort"])
    assert env(docs)["OCR_BIND"].rpartition(":")[2] == str(ports["http"]["containerPort"])
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]} and endpoint["port"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
    # the alert rules' `up{job="ocr-server"}` needs this job name
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "ocr-server"
    assert 'job="ocr-server"' in ALERTS.read_text()


def test_prometheus_rule_is_the_alert_file_and_passes_promtool(tmp_path: Path) -> None:
    rule = one(render(), "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text())  # the one copy, not a second that can drift
    spec = tmp_path / "rules.yml"
    spec.write_text(yaml.safe_dump(rule["spec"]))
    check = run(tool("promtool"), "check", "rules", str(spec))
    assert check.returncode == 0, check.stdout + check.stderr
    assert (CHART / "files" / "prometheus-alerts.yml").resolve() == ALERTS.resolve()


def test_adapter_rule_serves_the_hpa_metric(tmp_path: Path) -> None:
    """The Prometheus Adapter rule names the HPA's metric, selects a gauge the server defines, and its
    query, as the adapter fills it in, averages each pod's series over a minute (promtool, test series)."""
    (rule,) = yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["custom"]
    hpa = one(render(), "HorizontalPodAutoscaler")
    pods_metric = next(m for m in hpa["spec"]["metrics"] if m["type"] == "Pods")["pods"]["metric"]["name"]
    assert rule["name"]["as"] == pods_metric == "ocr_inflight_requests"
    assert metrics.INFLIGHT._name == pods_metric and metrics.INFLIGHT._type == "gauge"
    assert rule["seriesQuery"].startswith(pods_metric + "{")
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
    query = (rule["metricsQuery"].replace("<<.Series>>", pods_metric)
             .replace("<<.LabelMatchers>>", 'namespace="ocr",pod=~"ocr-a|ocr-b"').replace("<<.GroupBy>>", "pod"))
    rules = tmp_path / "adapter.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "adapter", "rules": [{"record": "adapter:inflight", "expr": query}]}]}))
    tests = tmp_path / "adapter.test.yml"
    tests.write_text(yaml.safe_dump({
        "rule_files": [rules.name], "evaluation_interval": "15s",
        "tests": [{
            "interval": "15s",
            "input_series": [
                {"series": 'ocr_inflight_requests{namespace="ocr",pod="ocr-a"}', "values": "0 0 0 0 3 2 4 2 4"},
                {"series": 'ocr_inflight_requests{namespace="ocr",pod="ocr-b"}', "values": "1 1 1 1 1 1 1 1 1"},
                {"series": 'ocr_inflight_requests{namespace="other",pod="ocr-a"}', "values": "9 9 9 9 9 9 9 9 9"},
            ],
            "promql_expr_test": [{
                "expr": "adapter:inflight", "eval_time": "2m",
                # [1m] at 2m: the samples after 1m (2 4 2 4 for ocr-a), and the one at 1m itself in
                # Prometheus 2 (3, so that both versions average to 3)
                "exp_samples": [{"labels": 'adapter:inflight{pod="ocr-a"}', "value": 3},
                                {"labels": 'adapter:inflight{pod="ocr-b"}', "value": 1}],
            }],
        }],
    }))
    result = run(tool("promtool"), "test", "rules", tests.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_shipped_manifests_are_the_current_render(variant: str) -> None:
    """deploy/kubernetes/ holds plain manifests for clusters without Helm: `make manifests` output."""
    shipped = (ROOT / "deploy" / "kubernetes" / f"ocr-server-{variant}.yaml").read_text()
    result = run(tool("helm"), "template", "ocr-server", str(CHART), "--namespace", NAMESPACE,
                 "-f", str(CHART / f"values-{variant}.yaml"))
    assert result.returncode == 0, result.stderr
    assert shipped.split("\n", 1)[1] == result.stdout, "deploy/kubernetes is stale: run make manifests"
