"""The monitoring files (deploy/monitoring/), checked offline: the alert rules through
promtool (`check rules`, and `test rules` with the unit tests in deploy/monitoring/tests/,
which fire each alert on a synthetic series and leave it quiet on a healthy one), the
PrometheusRule against the plain rules, the Grafana dashboard's structure and PromQL, the
ServiceMonitors and the exporter's manifests. promtool comes from Debian's `prometheus`
package (scripts/promtool.sh, run by `make test`). That every `glisk_*` name the rules and
the dashboard use is served by a running sidecar or exporter: tests/webhook/
test_monitoring_names.py."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools import monitoring
from tests.support.deploy_support import REPO
from tests.support.pod_security import restricted_violations

MONITORING = REPO / "deploy" / "monitoring"
K8S = REPO / "deploy" / "k8s"
UNIT_TESTS = MONITORING / "tests" / "glisk-rules.test.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
# Grafana's own variables, as a Prometheus query receives them
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.fail("promtool missing: run `bash scripts/promtool.sh` as root (make test does)")
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def rules() -> dict[str, Any]:
    return yaml.safe_load(monitoring.RULES.read_text())


def alerts(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def test_rules_pass_promtool_and_the_prometheus_rule_holds_the_same_groups(
    tmp_path: Path,
) -> None:
    checked = promtool("check", "rules", str(monitoring.RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alerts(rules()))} rules found" in checked.stdout
    # the PrometheusRule is generated from the plain file and not edited since
    assert monitoring.PROMETHEUS_RULE.read_text() == monitoring.render()
    resource = yaml.safe_load(monitoring.PROMETHEUS_RULE.read_text())
    assert (resource["apiVersion"], resource["kind"]) == (
        "monitoring.coreos.com/v1",
        "PrometheusRule",
    )
    assert resource["spec"]["groups"] == rules()["groups"]
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(resource["spec"]))
    assert promtool("check", "rules", str(spec)).returncode == 0
    # and promtool refuses a broken rule: the check is not a formality
    broken = copy.deepcopy(rules())
    broken["groups"][0]["rules"][0]["expr"] = "sum(rate(glisk_webhook_answers_total[5m])"
    spec.write_text(yaml.safe_dump(broken))
    assert promtool("check", "rules", str(spec)).returncode != 0


def test_every_alert_has_a_summary_a_runbook_section_and_a_severity() -> None:
    readme = (MONITORING / "README.md").read_text()
    sections = {
        re.sub(r"[^a-z0-9-]", "", line.lstrip("#").strip().lower().replace(" ", "-"))
        for line in readme.splitlines()
        if line.startswith("#")
    }
    for alert in alerts(rules()):
        name = alert["alert"]
        assert alert["labels"]["severity"] in ("critical", "warning"), name
        assert alert["annotations"]["summary"], name
        anchor = alert["annotations"]["runbook"]
        assert anchor == f"deploy/monitoring/README.md#{name.lower()}", name
        assert name.lower() in sections, f"README.md has no section for {name}"


def unit_test_copy(tmp_path: Path, doc: dict[str, Any], alert: str) -> Path:
    """The unit tests of `alert` only, beside a rules file holding `doc` (the layout they
    expect)."""
    (tmp_path / "tests").mkdir(exist_ok=True)
    (tmp_path / "glisk-rules.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    tests = yaml.safe_load(UNIT_TESTS.read_text())
    kept = []
    for test in tests["tests"]:
        cases = [c for c in test["alert_rule_test"] if c["alertname"] == alert]
        if cases:
            kept.append({**test, "alert_rule_test": cases})
    target = tmp_path / "tests" / UNIT_TESTS.name
    target.write_text(yaml.safe_dump({**tests, "tests": kept}, sort_keys=False))
    return target


def test_each_alert_fires_on_its_trouble_and_stays_quiet_on_a_healthy_series(
    tmp_path: Path,
) -> None:
    run = promtool("test", "rules", str(UNIT_TESTS), cwd=UNIT_TESTS.parent)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout
    tests = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    # quoted: YAML would read an unquoted `0x20` as the number 32, promtool as 0 20 times
    assert all(isinstance(s["values"], str) for t in tests for s in t["input_series"])
    cases = [c for t in tests for c in t["alert_rule_test"]]
    names = [a["alert"] for a in alerts(rules())]
    firing = {c["alertname"] for c in cases if c["exp_alerts"]}
    quiet = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert firing == set(names), set(names) ^ firing
    assert quiet == set(names), set(names) ^ quiet
    # Each alert's cases decide: without the alert the firing case fails, and an alert
    # that always fires fails the healthy case.
    for name in names:
        alone = promtool("test", "rules", str(unit_test_copy(tmp_path, rules(), name)))
        assert alone.returncode == 0, alone.stdout + alone.stderr  # the control
        for mutation in ("removed", "always firing"):
            doc = copy.deepcopy(rules())
            for group in doc["groups"]:
                for rule in list(group["rules"]):
                    if rule.get("alert") != name:
                        continue
                    if mutation == "removed":
                        group["rules"].remove(rule)
                    else:
                        rule["expr"] = f"({rule['expr']}) or vector(1)"
            mutated = promtool("test", "rules", str(unit_test_copy(tmp_path, doc, name)))
            assert mutated.returncode != 0, f"{name} {mutation}: the unit tests still pass"


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_expressions() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def test_dashboard_loads_and_its_panels_are_well_formed() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and isinstance(board["schemaVersion"], int)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = board["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    assert {p["type"] for p in panels} <= {"row", "timeseries", "stat"}
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):  # no two panels overlap
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["targets"], panel["id"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert "glisk_" in target["expr"], panel["title"]


def test_dashboard_expressions_parse_as_promql(tmp_path: Path) -> None:
    """promtool parses PromQL only inside rules: each expression becomes a recording rule
    (Grafana's $__ variables replaced by a duration, as Grafana does before querying)."""

    def check(expressions: list[str]) -> subprocess.CompletedProcess[str]:
        records = []
        for i, expr in enumerate(expressions):
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"unknown variable in {expr!r}"
            records.append({"record": f"glisk_dashboard:panel_{i}", "expr": expr})
        path = tmp_path / "dashboard-rules.yaml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
        return promtool("check", "rules", str(path))

    expressions = dashboard_expressions()
    assert len(expressions) >= 20
    parsed = check(expressions)
    assert parsed.returncode == 0, parsed.stdout + parsed.stderr
    assert check([*expressions, "sum by (le (rate(x[1m]))"]).returncode != 0


def k8s_docs() -> list[dict[str, Any]]:
    return [d for p in sorted(K8S.rglob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]


def named(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in k8s_docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def test_service_monitors_scrape_the_sidecar_and_the_exporter_under_the_rules_job_names() -> None:
    monitors = [
        d for d in yaml.safe_load_all((MONITORING / "servicemonitor.yaml").read_text()) if d
    ]
    assert {(m["apiVersion"], m["kind"]) for m in monitors} == {
        ("monitoring.coreos.com/v1", "ServiceMonitor")
    }
    jobs = set()
    for monitor in monitors:
        wanted = monitor["spec"]["selector"]["matchLabels"]
        (service,) = [
            d
            for d in k8s_docs()
            if d["kind"] == "Service" and wanted.items() <= d["metadata"]["labels"].items()
        ]
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        assert endpoint["path"] == "/metrics"
        jobs.add(service["metadata"]["name"])  # the Operator's job label: the Service's name
    (target_rule,) = [a for a in alerts(rules()) if a["alert"] == "GliskTargetDown"]
    (selected,) = re.findall(r'up\{job=~"([^"]+)"\} == 0', target_rule["expr"])
    assert set(selected.split("|")) == jobs


def test_exporter_deployment_runs_glisk_exporter_under_pod_security_restricted() -> None:
    deployment = named("Deployment", "glisk-exporter")
    pod = deployment["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    (container,) = pod["containers"]
    assert container["command"][:2] == ["glisk", "exporter"]
    argv = container["command"]
    port = int(argv[argv.index("--port") + 1])
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    (container_port,) = container["ports"]
    assert container_port == {"name": "metrics", "containerPort": port}
    assert not pod.get("volumes")  # no hostPath, nothing to mount
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e for e in container["env"]}
    for secret in ("DATABASE_URL", "RPC_URL", "ALCHEMY_API_KEY"):
        assert "secretKeyRef" in env[secret]["valueFrom"], secret
    service = named("Service", "glisk-exporter")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] == "metrics"
