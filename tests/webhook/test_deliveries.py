"""Signed deliveries built from real anvil logs, POSTed to the running sidecar; the tables
are then compared with the chain."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, func, select

from devtools.anvil import DEFAULT_MINT_PRICE, DEV_ACCOUNTS, random_address, send_block
from devtools.history import (
    Mint,
    fake_burn_tx,
    fake_mint_tx,
    mint_batches,
    mint_through_tx,
    mint_tx,
)
from devtools.local_chain import DEFAULT_AUTHOR
from devtools.oracle import (
    BATCH_BURNED_TOPIC0,
    ChainMint,
    chain_logs,
    compare_with_chain,
    decode_mint,
)
from devtools.replay import SEQUENCE_BASE, chain_deliveries, delivery
from glisk_pipeline.db.schema import authors, mint_events, tokens, webhook_blocks
from glisk_pipeline.db.store import MintStore
from tests.support.factories import chain_of
from tests.support.fixtures_chain import DevChain
from tests.webhook.helpers import Service, TcpProxy


def count(engine: Engine, table, *where) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def mint_some(devchain: DevChain, n: int, per_block: int, seed: int = 1) -> list[str]:
    """n genuine mints, per_block to a block; returns the authors used (checksummed)."""
    rng = random.Random(seed)
    people = [random_address(rng) for _ in range(6)]
    mints = []
    for i in range(n):
        quantity = 1 + (i * 7) % 50
        value = DEFAULT_MINT_PRICE * quantity + (10**19 if i == 0 else 0)  # > 2^63 wei once
        mints.append(Mint(DEV_ACCOUNTS[i % 10], people[i % 6], quantity, value))
    mint_batches(devchain.anvil, devchain.glisk, mints, per_block=per_block)
    return people


def assert_tables_match_chain(
    engine: Engine, chain: list[ChainMint], registered: set[str], source: str = "webhook"
) -> None:
    """The oracle finds mint_events and tokens equal to the chain; and the columns it does not
    compare (timestamps, source, each token's author and status) are right too."""
    assert compare_with_chain(engine, chain, with_stats=False) == []
    with engine.connect() as conn:
        events = {(r.tx_hash, r.log_index): r for r in conn.execute(select(mint_events))}
        token_rows = {r.token_id: r for r in conn.execute(select(tokens))}
        author_ids = dict(conn.execute(select(authors.c.wallet_address, authors.c.id)).all())
    for m in chain:
        row = events[(m.tx_hash, m.log_index)]
        assert row.block_timestamp == datetime.fromtimestamp(m.block_timestamp, UTC)
        assert (row.source, row.removed) == (source, False)
        wallet = m.prompt_author if m.prompt_author in registered else DEFAULT_AUTHOR
        for token_id in range(m.start_token_id, m.start_token_id + m.quantity):
            token = token_rows[token_id]
            assert token.mint_event_id == row.id
            assert (token.minter_address, token.status) == (m.minter, "detected")
            assert token.author_id == author_ids[wallet]
            assert token.mint_timestamp == row.block_timestamp


def test_mints_on_anvil_are_stored_once_and_match_the_chain(
    webhook: Service, devchain: DevChain, pg_engine: Engine
) -> None:
    people = mint_some(devchain, 45, per_block=3)
    registered = {a.lower() for a in people[:2]}
    store = MintStore(pg_engine, DEFAULT_AUTHOR)
    for wallet in people[:2]:  # checksummed, as users paste them
        store.register_author(wallet)
    deliveries = chain_deliveries(devchain.anvil.rpc_batch, devchain.glisk)
    assert len(deliveries) == 15
    for payload in deliveries:
        answer = webhook.post(payload)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["status"] == "success" and body["duplicates"] == []
        assert len(body["events"]) == 3
    assert_tables_match_chain(pg_engine, devchain.mints(), registered)
    # the answer's ids are the rows' ids
    with pg_engine.connect() as conn:
        ids = dict(conn.execute(select(mint_events.c.tx_hash, mint_events.c.id)).all())
    for event in body["events"]:
        assert event["mint_event_id"] == ids[event["tx_hash"]]
        assert event["token_ids"] == sorted(event["token_ids"]) and event["token_ids"]


def test_duplicate_delivery_is_409_and_adds_nothing(
    webhook: Service, devchain: DevChain, pg_engine: Engine
) -> None:
    mint_some(devchain, 2, per_block=2)
    (payload,) = chain_deliveries(devchain.anvil.rpc_batch, devchain.glisk)
    assert webhook.post(payload).status_code == 200
    before = (count(pg_engine, mint_events), count(pg_engine, tokens))
    again = webhook.post(payload)
    assert again.status_code == 409
    first_log = payload["event"]["data"]["block"]["logs"][0]
    assert again.json() == {
        "status": "duplicate",
        "message": "Event already processed",
        "tx_hash": first_log["transaction"]["hash"],
        "log_index": first_log["index"],
        "duplicates": [
            {"tx_hash": log["transaction"]["hash"], "log_index": log["index"]}
            for log in payload["event"]["data"]["block"]["logs"]
        ],
    }
    assert (count(pg_engine, mint_events), count(pg_engine, tokens)) == before


def test_mixed_new_and_duplicate_is_200_listing_both(
    webhook: Service, devchain: DevChain, pg_engine: Engine
) -> None:
    mint_some(devchain, 3, per_block=3)
    (payload,) = chain_deliveries(devchain.anvil.rpc_batch, devchain.glisk)
    logs = payload["event"]["data"]["block"]["logs"]
    partial = copy.deepcopy(payload)
    partial["event"]["data"]["block"]["logs"] = logs[:1]
    assert webhook.post(partial).status_code == 200
    answer = webhook.post(payload)
    assert answer.status_code == 200
    body = answer.json()
    assert [e["log_index"] for e in body["events"]] == [log["index"] for log in logs[1:]]
    assert body["duplicates"] == [{"tx_hash": logs[0]["transaction"]["hash"], "log_index": 0}]
    assert count(pg_engine, mint_events) == 3


def test_decoys_failed_transactions_and_heartbeats_store_nothing(
    webhook: Service, devchain: DevChain, pg_engine: Engine
) -> None:
    anvil, decoy, sender = devchain.anvil, devchain.decoy, DEV_ACCOUNTS[1]
    author = DEV_ACCOUNTS[2]
    send_block(
        anvil,
        [fake_mint_tx(decoy, sender, author, 1, 5), fake_burn_tx(decoy, sender, author, 1, 5)],
    )
    mint_some(devchain, 1, per_block=1)
    # every log of every block, unfiltered: a broad query an operator might paste
    wide = chain_deliveries(anvil.rpc_batch, None, anvil.block_number() - 1, None, topic0=None)
    decoy_delivery, genuine = wide
    assert {
        log["account"]["address"] for log in decoy_delivery["event"]["data"]["block"]["logs"]
    } == {decoy}
    # a look-alike event on our own address, and our event in a failed transaction
    look_alike, failed = copy.deepcopy(genuine), copy.deepcopy(genuine)
    look_alike["event"]["data"]["block"]["logs"][0]["topics"][0] = BATCH_BURNED_TOPIC0
    failed["event"]["data"]["block"]["logs"][0]["transaction"]["status"] = 0
    block = genuine["event"]["data"]["block"]
    heartbeat = delivery({k: block[k] for k in ("number", "hash", "timestamp")})
    for payload in (decoy_delivery, look_alike, failed, heartbeat):
        answer = webhook.post(payload)
        assert answer.status_code == 200, answer.text
        assert answer.json()["message"] == "no matching events"
        assert answer.json()["events"] == []
    assert count(pg_engine, mint_events) == 0 and count(pg_engine, tokens) == 0


def test_mint_made_through_a_contract_keeps_only_the_genuine_log(
    webhook: Service, devchain: DevChain, pg_engine: Engine
) -> None:
    anvil = devchain.anvil
    tx = mint_through_tx(devchain.decoy, devchain.glisk, DEV_ACCOUNTS[3], DEV_ACCOUNTS[4], 4, 0)
    tx["value"] = hex(DEFAULT_MINT_PRICE * 4)
    send_block(anvil, [tx])
    (payload,) = chain_deliveries(anvil.rpc_batch, None, anvil.block_number(), None, None)
    assert len(payload["event"]["data"]["block"]["logs"]) == 3  # decoy, genuine, decoy
    answer = webhook.post(payload)
    assert answer.status_code == 200 and len(answer.json()["events"]) == 1
    assert_tables_match_chain(pg_engine, devchain.mints(), set())


def test_eth_getlogs_shaped_logs_are_accepted_and_removed_ones_ignored(
    webhook: Service, devchain: DevChain, pg_engine: Engine
) -> None:
    mint_some(devchain, 2, per_block=2)
    raw = chain_logs(devchain.anvil, devchain.glisk)
    (graphql,) = chain_deliveries(devchain.anvil.rpc_batch, devchain.glisk)
    payload = copy.deepcopy(graphql)
    payload["event"]["data"]["block"]["logs"] = [raw[0], {**raw[1], "removed": True}]
    assert webhook.post(payload).status_code == 200
    assert_tables_match_chain(pg_engine, [decode_mint(raw[0])], set())


def test_a_graphql_log_marked_removed_is_not_stored_as_live(
    webhook: Service, devchain: DevChain, pg_engine: Engine
) -> None:
    mint_some(devchain, 2, per_block=2)
    raw = chain_logs(devchain.anvil, devchain.glisk)
    (payload,) = chain_deliveries(devchain.anvil.rpc_batch, devchain.glisk)
    payload["event"]["data"]["block"]["logs"][1]["removed"] = True
    answer = webhook.post(payload)
    assert answer.status_code == 200, answer.text
    assert_tables_match_chain(pg_engine, [decode_mint(raw[0])], set())
    payload["event"]["data"]["block"]["logs"][1]["removed"] = "yes"  # not a boolean
    refused = webhook.post(payload)
    assert refused.status_code == 400 and "removed" in refused.json()["message"]


def test_sequence_number_above_2_to_the_53_is_kept_exact(
    webhook: Service, devchain: DevChain, pg_engine: Engine
) -> None:
    mint_some(devchain, 1, per_block=1)
    (payload,) = chain_deliveries(devchain.anvil.rpc_batch, devchain.glisk)
    huge = 2**64 + 1  # a float would make it 2**64
    payload["event"]["sequenceNumber"] = str(huge)
    assert webhook.post(payload).status_code == 200
    with pg_engine.connect() as conn:
        assert conn.execute(select(webhook_blocks.c.sequence_number)).scalar_one() == huge


def test_database_down_is_500_with_nothing_stored_then_the_retry_succeeds(
    webhook: Service, devchain: DevChain, pg_engine: Engine, pg_proxy: TcpProxy
) -> None:
    mint_some(devchain, 3, per_block=3)
    (payload,) = chain_deliveries(devchain.anvil.rpc_batch, devchain.glisk)
    assert webhook.http.get("/readyz").status_code == 200
    pg_proxy.down()  # cuts the pooled connections and refuses new ones
    try:
        answer = webhook.post(payload)
        assert answer.status_code == 500
        assert answer.json()["code"] == "INTERNAL_ERROR"
        assert webhook.http.get("/readyz").status_code == 503
        # an unsigned request never needs the database: still a cheap 401, not a 500
        bad = webhook.post(payload, key="not-a-configured-key")
        assert bad.status_code == 401
    finally:
        pg_proxy.up()
    assert count(pg_engine, mint_events) == count(pg_engine, tokens) == 0
    assert count(pg_engine, webhook_blocks) == 0
    retry = webhook.post(payload)
    assert retry.status_code == 200, retry.text
    assert_tables_match_chain(pg_engine, devchain.mints(), set())


def test_reorg_replaces_the_block_and_an_older_sequence_is_ignored(
    webhook: Service, devchain: DevChain, pg_engine: Engine
) -> None:
    anvil = devchain.anvil
    mint_some(devchain, 2, per_block=2)
    (old,) = chain_deliveries(anvil.rpc_batch, devchain.glisk)
    assert webhook.post(old).status_code == 200
    old_block = old["event"]["data"]["block"]
    # Replace the head block with one holding a single, different mint.
    replacement = mint_tx(
        devchain.glisk, DEV_ACCOUNTS[7], DEV_ACCOUNTS[8], 7, DEFAULT_MINT_PRICE * 7
    )
    anvil.rpc("anvil_reorg", [1, [[replacement, 0]]])
    (new,) = chain_deliveries(anvil.rpc_batch, devchain.glisk, old_block["number"])
    new_block = new["event"]["data"]["block"]
    assert new_block["number"] == old_block["number"] and new_block["hash"] != old_block["hash"]
    new["event"]["sequenceNumber"] = str(SEQUENCE_BASE + 10**6)  # re-sent later: higher
    answer = webhook.post(new)
    assert answer.status_code == 200, answer.text
    assert answer.json()["removed"] == 2
    with pg_engine.connect() as conn:
        rows = conn.execute(select(mint_events.c.block_hash, mint_events.c.removed)).all()
    assert sorted(rows) == sorted(
        [(old_block["hash"], True), (old_block["hash"], True), (new_block["hash"], False)]
    )
    live = devchain.mints()
    assert len(live) == 1 and live[0].quantity == 7
    assert count(pg_engine, tokens) == 7
    # The old block's delivery arriving late (lower sequenceNumber) changes nothing.
    late = webhook.post(old)
    assert late.status_code == 200 and "stale" in late.json()["message"]
    with pg_engine.connect() as conn:
        assert conn.execute(
            select(mint_events.c.block_hash).where(~mint_events.c.removed)
        ).all() == [(new_block["hash"],)]
    assert count(pg_engine, tokens) == 7


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda p: p.pop("event"), "event"),
        (lambda p: p.update(type="ADDRESS_ACTIVITY"), "type"),
        (lambda p: p["event"].update(sequenceNumber="12ab"), "event.sequenceNumber"),
        (lambda p: p["event"].update(sequenceNumber=1.5), "event.sequenceNumber"),
        (lambda p: p["event"]["data"]["block"].update(number=-1), "event.data.block.number"),
        (lambda p: p["event"]["data"]["block"].update(number=2**63), "event.data.block.number"),
        (lambda p: p["event"]["data"]["block"].update(hash="0x12"), "event.data.block.hash"),
        (lambda p: p["event"]["data"]["block"].update(logs={}), "event.data.block.logs"),
        (lambda p: _log(p).update(index="x"), "event.data.block.logs.0.index"),
        (lambda p: _log(p).pop("transaction"), "event.data.block.logs.0.transaction"),
        (lambda p: _log(p)["transaction"].pop("status"), "logs.0.transaction.status"),
        (lambda p: _log(p).update(data=_log(p)["data"][:-2]), "event.data.block.logs.0: data"),
        (lambda p: _log(p)["topics"].pop(), "event.data.block.logs.0: topics"),
    ],
)
def test_malformed_payloads_are_400_naming_the_field(
    webhook: Service, devchain: DevChain, pg_engine: Engine, mutate, field: str
) -> None:
    mint_some(devchain, 1, per_block=1)
    (payload,) = chain_deliveries(devchain.anvil.rpc_batch, devchain.glisk)
    mutate(payload)
    answer = webhook.post(payload)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["code"] == "INVALID_PAYLOAD" and body["status"] == "error"
    assert field in body["message"]
    assert count(pg_engine, mint_events) == 0


def _log(payload: dict) -> dict:
    return payload["event"]["data"]["block"]["logs"][0]


@pytest.mark.parametrize("created", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_created_at_outside_utc_range_is_400(
    webhook: Service, devchain: DevChain, pg_engine: Engine, created: str
) -> None:
    # A time whose UTC instant has no datetime (year 0 or 10000) was a 500 (OverflowError
    # converting it to UTC) on every retry, though the database was fine.
    mint_some(devchain, 1, per_block=1)
    (payload,) = chain_deliveries(devchain.anvil.rpc_batch, devchain.glisk)
    payload["createdAt"] = created
    answer = webhook.post(payload)
    assert answer.status_code == 400, answer.text
    assert answer.json()["message"].startswith("createdAt")
    assert count(pg_engine, mint_events) == 0


def test_a_delivery_without_sequence_number_does_not_revive_a_final_removal(
    webhook: Service, devchain: DevChain, pg_engine: Engine
) -> None:
    # Without a sequenceNumber a delivery cannot be ordered, so it is stored without a
    # claim; it must still not undo what the chain decided for a final block.
    mint_some(devchain, 1, per_block=1)
    (payload,) = chain_deliveries(devchain.anvil.rpc_batch, devchain.glisk)
    del payload["event"]["sequenceNumber"]
    assert webhook.post(payload).status_code == 200
    block = payload["event"]["data"]["block"]["number"]
    # the final chain has no mint in that block (a reorg took it): reconciled, removed
    MintStore(pg_engine, DEFAULT_AUTHOR, start_block=0).reconcile_range(
        [], start_block=block, end_block=block, canonical=chain_of()
    )
    assert count(pg_engine, mint_events, ~mint_events.c.removed) == 0
    again = webhook.post(payload)  # the same delivery again
    assert again.status_code == 200, again.text
    assert (
        again.json()["message"]
        == "stale delivery: block already reconciled from the chain as final"
    )
    # nor add a log the final chain does not have (another fork's transaction)
    _log(payload)["transaction"]["hash"] = "0x" + "ee" * 32
    orphan = webhook.post(payload)
    assert orphan.status_code == 200 and orphan.json()["message"].startswith("stale"), orphan.text
    assert count(pg_engine, mint_events) == 1
    assert count(pg_engine, mint_events, ~mint_events.c.removed) == 0
