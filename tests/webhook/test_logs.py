"""What the sidecar writes per delivery: one line for every outcome, and a bounded
volume of lines for refusals anyone can provoke (with the metric still exact)."""

from __future__ import annotations

from pathlib import Path

import orjson
from sqlalchemy import Engine

from tests.support.fixtures_chain import DevChain
from tests.webhook.helpers import Service, one_mint_delivery, running, service_env

URL = "/webhooks/alchemy"


def records(service: Service, start: int = 0) -> list[dict]:
    text = service.log_path.read_bytes()[start:].decode()
    return [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]


def counter(service: Service, outcome: str) -> float:
    for line in service.http.get("/metrics").text.splitlines():
        if line.startswith(f'glisk_webhook_deliveries_total{{outcome="{outcome}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_every_outcome_is_logged_once_duplicates_included(
    webhook: Service, devchain: DevChain
) -> None:
    payload = one_mint_delivery(devchain)
    start = len(webhook.log_path.read_bytes())
    assert webhook.post(payload).status_code == 200
    assert webhook.post(payload).status_code == 409  # the session service's default
    lines = [r for r in records(webhook, start) if r["event"] == "delivery"]
    assert [(r["outcome"], r["status"], r["level"]) for r in lines] == [
        ("stored", 200, "info"),
        ("duplicate", 409, "info"),
    ]
    assert all(
        r["event_id"] == payload["id"] and r["webhook_id"] == payload["webhookId"] for r in lines
    )
    # the handler's time, and the database call's part of it
    assert all(0 < r["db_ms"] <= r["ms"] for r in lines), lines


def test_rejected_signatures_are_aggregated_and_counted_exactly(
    pg_url: str, pg_engine: Engine, devchain: DevChain, tmp_path: Path
) -> None:
    env = service_env(pg_url, devchain.glisk, WEBHOOK_REJECTED_LOG_SECONDS="3600")
    bad = 500
    with running(env, tmp_path) as service:
        before = counter(service, "unauthorized")
        for i in range(bad):
            headers = {"x-alchemy-signature": f"{i:064x}", "content-type": "application/json"}
            assert service.http.post(URL, content=b"{}", headers=headers).status_code == 401
        assert counter(service, "unauthorized") == before + bad  # the metric stays exact
        during = [r for r in records(service) if r.get("outcome") == "unauthorized"]
        assert len(during) == 1 and during[0]["suppressed"] == 0, during
    # on shutdown the count left out is written, so no refusal goes unrecorded in the log
    after = [r for r in records(service) if r.get("outcome") == "unauthorized"]
    assert len(after) == 2 and after[1]["suppressed"] == bad - 1, after
