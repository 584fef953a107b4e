"""Every `glisk_*` name the alert rules and the Grafana dashboard use is served by a running
sidecar (uvicorn, real HTTP) or a running `glisk exporter`, scraped here: a rule on a name
nobody exports never fires."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from devtools import monitoring
from devtools.local_chain import DEFAULT_AUTHOR
from glisk_pipeline.db.store import MintStore
from glisk_pipeline.run_metrics import RunRpc, run_failed, run_finished, sensor_ticked
from tests.support.fixtures_chain import DevChain
from tests.webhook.helpers import Service, one_mint_delivery

NAME = re.compile(r"\bglisk_[a-z0-9_]+\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}


def used_names() -> set[str]:
    """The glisk_* names in the rules' expressions and annotations and the dashboard's
    queries."""
    text = []
    for group in yaml.safe_load(monitoring.RULES.read_text())["groups"]:
        for rule in group["rules"]:
            text += [rule["expr"], *rule.get("annotations", {}).values()]
    board = json.loads((monitoring.MONITORING / "grafana-dashboard.json").read_text())
    text += [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    return {name for chunk in text for name in NAME.findall(chunk)}


def served_names(text: str) -> set[str]:
    """Every sample name, and every declared family with its type's sample names (a
    labelled family without a child yet declares its type only)."""
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {s.name for s in family.samples}
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
    return names


def test_every_name_the_rules_and_the_dashboard_use_is_served(
    webhook: Service,
    devchain: DevChain,
    cli_env: dict[str, str],
    pg_engine: Engine,
    tmp_path: Path,
) -> None:
    assert webhook.post(one_mint_delivery(devchain)).status_code == 200
    now = time.time()  # what the runs and sensors record, through the functions they call
    store = MintStore(pg_engine, DEFAULT_AUTHOR)
    store.record_metrics(*run_finished("backfill", RunRpc(3, 1, 1), succeeded=True, now=now))
    store.record_metrics(*run_failed("tip_fill", "provider_lag", now=now))
    store.record_metrics({}, sensor_ticked("chain_head_sensor", now=now))
    env = {k: v for k, v in cli_env.items() if not k.startswith("WEBHOOK_")}
    argv = [sys.executable, "-m", "glisk_pipeline.cli", "exporter", "--port", "{port}"]
    exporter = Service(env, tmp_path, argv=argv)
    try:
        from_exporter = served_names(exporter.http.get("/metrics").text)
    finally:
        exporter.stop()
    from_sidecar = served_names(webhook.http.get("/metrics").text)

    used = used_names()
    assert len(used) >= 30
    missing = used - (from_sidecar | from_exporter)
    assert not missing, f"used but served by neither: {sorted(missing)}"
    # each side serves its own part: the sidecar the glisk_webhook_* of its processes
    assert {"glisk_webhook_answers_total", "glisk_webhook_request_seconds_bucket"} <= from_sidecar
    assert {"glisk_supply_proof_ok", "glisk_webhook_delivery_age_seconds"} <= from_exporter
    assert "glisk_supply_proof_ok" not in from_sidecar
