"""A heartbeat in the shape Alchemy's FAQ shows (`{"event": {"data": {"block": {"logs":
[]}}, "sequenceNumber": "..."}}`: no block fields) keeps the webhook alive, through a real
sidecar on both dialects: the delivery's arrival is in the tables, the silence judgement
(`glisk status`, webhook_silence_sensor) counts it, and /metrics shows it."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dagster import build_sensor_context, instance_for_test
from sqlalchemy import Engine

from glisk_pipeline.defs.resources import ChainResource, DatabaseResource
from glisk_pipeline.defs.silence.sensor import webhook_silence_sensor
from glisk_pipeline.sync.tip import read_view, silence
from tests.support.fixtures_chain import DevChain
from tests.webhook.helpers import DEFAULT_AUTHOR, running, service_env

HEARTBEAT = json.loads(
    (Path(__file__).parent / "fixtures" / "alchemy_graphql_heartbeat.json").read_text()
)


def metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_a_heartbeat_without_block_fields_keeps_the_webhook_alive(
    dialect: str,
    request: pytest.FixtureRequest,
    devchain: DevChain,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = request.getfixturevalue("pg_url" if dialect == "postgresql" else "sqlite_url")
    engine: Engine = request.getfixturevalue(
        "pg_engine" if dialect == "postgresql" else "sqlite_engine"
    )
    head = devchain.anvil.block_number()
    assert read_view(engine)[0].last_delivery_at is None  # nothing delivered yet
    sent_at = datetime.now(UTC)
    with running(service_env(url, devchain.glisk), tmp_path) as service:
        answer = service.post(HEARTBEAT)
        scraped = service.http.get("/metrics").text
    assert answer.status_code == 200 and answer.json()["message"] == "no matching events"

    view, _ = read_view(engine)
    assert view.last_block is None  # the heartbeat named none
    assert view.last_delivery_at is not None
    assert abs((view.last_delivery_at - sent_at).total_seconds()) < 30
    now = datetime.now(UTC)
    assert silence(view, head + 100, now, threshold_s=300) is None
    later = silence(view, head + 100, now + timedelta(seconds=400), threshold_s=300)
    assert later is not None and "no delivery has named a block" in later
    last = metric(scraped, "glisk_webhook_last_delivery_timestamp_seconds")
    assert last is not None and abs(last - time.time()) < 60

    # the sensor reads the same: alive, no fill requested
    monkeypatch.setenv("GLISK_WEBHOOK_SILENCE_SECONDS", "300")
    resources = {
        "chain": ChainResource(
            rpc_url=devchain.anvil.url, network="LOCAL", contract_address=devchain.glisk,
            start_block=head,
        ),
        "database": DatabaseResource(
            database_url=url, default_author_wallet=DEFAULT_AUTHOR, start_block=head
        ),
    }  # fmt: skip
    with (
        instance_for_test() as instance,
        build_sensor_context(instance=instance, resources=resources) as context,
    ):
        result = webhook_silence_sensor(context)
    assert not result.run_requests
    assert result.skip_reason is not None
    assert (result.skip_reason.skip_message or "").startswith("webhook alive: last delivery at")
