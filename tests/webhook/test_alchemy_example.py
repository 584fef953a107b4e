"""Alchemy's documented Custom Webhook (GraphQL) delivery shape, as a static fixture, into
a real sidecar and the database. What the fixtures reproduce from Alchemy's documentation
of the payload: the envelope `webhookId` ("wh_" + 16 characters), `id` ("whevt_" + 16),
`createdAt` in RFC 3339 with nanoseconds and "Z", `type` "GRAPHQL"; the query result under
`event.data.block` (block `hash`, `number` and `timestamp` as JSON integers, each log with
`data`, `topics`, `index`, `account.address` and `transaction{hash, index, from{address},
to{address}, status}`); `event.sequenceNumber` as a decimal string above 2^53; and the
heartbeat sent for every block whose query matched nothing (`logs: []`, no block fields).
The values are ours: one BatchMinted log of 3 tokens."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, select

from glisk_pipeline.db.schema import mint_events, tokens, webhook_blocks
from tests.webhook.helpers import running, service_env

FIXTURES = Path(__file__).parent / "fixtures"


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def test_alchemy_documented_delivery_is_accepted_and_stored(
    pg_url: str, pg_engine: Engine, tmp_path: Path
) -> None:
    delivery = load("alchemy_graphql_log_delivery.json")
    heartbeat = load("alchemy_graphql_heartbeat.json")
    block = delivery["event"]["data"]["block"]
    (log,) = block["logs"]
    contract = log["account"]["address"]
    with running(service_env(pg_url, contract), tmp_path) as service:
        answer = service.post(delivery)
        beat = service.post(heartbeat)
    assert answer.status_code == 200, answer.text
    (event,) = answer.json()["events"]
    assert (event["tx_hash"], event["log_index"]) == (log["transaction"]["hash"], log["index"])
    assert event["token_ids"] == [1042, 1043, 1044]
    assert beat.status_code == 200 and beat.json()["message"] == "no matching events"

    with pg_engine.connect() as conn:
        row = conn.execute(select(mint_events)).one()
        token_rows = conn.execute(select(tokens.c.token_id, tokens.c.status)).all()
        applied = conn.execute(select(webhook_blocks)).one()
    assert row.tx_hash == log["transaction"]["hash"] and row.log_index == 117
    assert row.block_number == block["number"] and row.block_hash == block["hash"]
    assert row.block_timestamp == datetime.fromtimestamp(block["timestamp"], UTC)
    assert row.contract_address == contract and row.minter == log["transaction"]["from"]["address"]
    assert row.author_wallet == "0x90f79bf6eb2c4f870365e785982e1f101e93b906"
    assert (row.start_token_id, row.quantity, row.total_paid) == (1042, 3, 3 * 10**15)
    assert row.source == "webhook" and row.removed is False
    assert sorted(token_rows) == [(t, "detected") for t in (1042, 1043, 1044)]
    # the string sequenceNumber is kept exactly (it is above 2^53), per webhook
    assert applied.sequence_number == int(delivery["event"]["sequenceNumber"])
    assert applied.webhook_id == delivery["webhookId"] and applied.block_hash == block["hash"]
