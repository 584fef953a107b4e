"""`python -m devtools.monitoring`: write deploy/monitoring/prometheusrule.yaml, the alert
rules of deploy/monitoring/glisk-rules.yaml as a PrometheusRule for the Prometheus
Operator (tests/test_monitoring.py checks that the two hold the same groups)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MONITORING = Path(__file__).resolve().parent.parent / "deploy" / "monitoring"
RULES = MONITORING / "glisk-rules.yaml"
PROMETHEUS_RULE = MONITORING / "prometheusrule.yaml"
HEADER = """\
# Generated from glisk-rules.yaml by `python -m devtools.monitoring`: edit that file, then
# regenerate. The `release` label is what a kube-prometheus-stack Prometheus selects rules
# by (its ruleSelector); set it to your Prometheus's selector.
"""


def prometheus_rule(rules: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "glisk-pipeline",
            "labels": {
                "app.kubernetes.io/part-of": "glisk-pipeline",
                "release": "kube-prometheus-stack",
            },
        },
        "spec": {"groups": rules["groups"]},
    }


def render() -> str:
    rules = yaml.safe_load(RULES.read_text())
    body = yaml.safe_dump(prometheus_rule(rules), sort_keys=False, width=100)
    return HEADER + body


if __name__ == "__main__":
    PROMETHEUS_RULE.write_text(render())
    print(f"wrote {PROMETHEUS_RULE}")
