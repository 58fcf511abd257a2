"""The shipped monitoring (deploy/) and the README's metrics table agree with the metrics the server defines.

Alert rules and dashboard queries are checked with `promtool` (Debian package `prometheus`) when it is
installed: rule syntax, the rules' own unit tests (deploy/prometheus-alerts.test.yml), and every
dashboard query parsed as PromQL. Without promtool those tests skip; the name checks always run.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.metrics import MetricWrapperBase

import server.observability.metrics
from tests.support.server import ROOT

DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus-alerts.yml"
RULE_TESTS = DEPLOY / "prometheus-alerts.test.yml"
DASHBOARD = DEPLOY / "grafana-dashboard.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)")
_METRIC_NAME = re.compile(r"\bocr_[a-z_]+\b")


def _defined() -> dict[str, MetricWrapperBase]:
    return {m._name: m for m in vars(server.observability.metrics).values() if isinstance(m, MetricWrapperBase)}


def _exposed_name(metric: MetricWrapperBase) -> str:
    """The name a person reads in the exposition and in docs: counters with `_total`."""
    return f"{metric._name}_total" if metric._type == "counter" else metric._name


def _sample_names() -> set[str]:
    names = set()
    for name, metric in _defined().items():
        suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}[metric._type]
        names.update(name + suffix for suffix in suffixes)
    return names


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    queries += [annotation["expr"] for annotation in dashboard["annotations"]["list"]]
    return queries


def _as_promql(query: str) -> str:
    """A dashboard query with Grafana's variables replaced by what Grafana would put there."""
    return (query.replace("$__rate_interval", "2m").replace("$__range", "6h")
            .replace("$instance", ".*"))


def test_dashboard_and_alerts_use_only_defined_metrics() -> None:
    used = set(_METRIC_NAME.findall(RULES.read_text()))
    used |= {name for query in _dashboard_queries() for name in _METRIC_NAME.findall(query)}
    unknown = used - _sample_names()
    assert not unknown, f"deploy/ refers to metrics the server does not expose: {sorted(unknown)}"
    # every metric a person watches is on the dashboard (the rest are in the README table)
    assert {"ocr_requests_total", "ocr_stage_duration_seconds_bucket", "ocr_model_info",
            "ocr_feedback_char_errors_total", "ocr_model_golden_cer"} <= used


def _documented_type(metric: MetricWrapperBase) -> str:
    if metric._type == "gauge":
        return f"gauge (`{metric._multiprocess_mode}`)"  # type: ignore[attr-defined]
    return metric._type


def test_readme_metrics_table_lists_every_metric_with_its_type() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(ocr_[a-z_]+)` \| ([^|]+?) \|", section, re.M)}
    expected = {_exposed_name(metric): _documented_type(metric) for metric in _defined().values()}
    assert rows == expected


@needs_promtool
def test_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    check = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run([PROMTOOL, "test", "rules", RULE_TESTS.name], cwd=DEPLOY, capture_output=True, text=True)
    assert unit.returncode == 0, unit.stdout + unit.stderr


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses rule expressions, so each dashboard query goes through it as a recording rule."""
    rules = [{"record": f"dashboard:query_{i}", "expr": _as_promql(query)} for i, query in enumerate(_dashboard_queries())]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))  # JSON is YAML
    check = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
