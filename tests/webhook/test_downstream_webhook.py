"""The downstream contract through the running sidecar, on anvil: a worker LISTENing gets
every stored token id once, and a reorg delivered as a heartbeat keeps the rows a worker
moved on (orphaned), which `glisk status` then names and fails on; and a row a worker
holds locked makes a delivery that needs it refused at once, not waited for."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Engine, select

from devtools.anvil import DEFAULT_MINT_PRICE, DEV_ACCOUNTS
from devtools.history import mint_tx
from devtools.replay import SEQUENCE_BASE, chain_deliveries, delivery
from glisk_pipeline.cli import status
from glisk_pipeline.db.engine import libpq_conninfo
from glisk_pipeline.db.schema import orphaned_tokens
from tests.support.downstream_support import Listener, announced, move_on, token_ids, token_row
from tests.support.fixtures_chain import DevChain
from tests.webhook.helpers import Service
from tests.webhook.test_deliveries import mint_some


@pytest.fixture
def listener(pg_url: str, pg_engine: Engine) -> Iterator[Listener]:
    worker = Listener(pg_url)
    yield worker
    worker.close()


def test_a_listening_worker_receives_every_stored_token_id_once(
    webhook: Service, devchain: DevChain, pg_engine: Engine, listener: Listener
) -> None:
    mint_some(devchain, 12, per_block=3)
    deliveries = chain_deliveries(devchain.anvil.rpc_batch, devchain.glisk)
    for payload in deliveries + deliveries[:2]:  # two Alchemy retries: nothing new
        assert webhook.post(payload).status_code in (200, 409)
    payloads = listener.drain()
    assert len(payloads) == len(deliveries)  # one per delivery that stored tokens
    assert announced(payloads, "detected") == {t: 1 for t in token_ids(pg_engine)}
    assert sum(m.quantity for m in devchain.mints()) == len(token_ids(pg_engine))


def test_a_reorg_as_a_heartbeat_keeps_moved_on_rows_and_status_names_them(
    webhook: Service,
    devchain: DevChain,
    pg_engine: Engine,
    listener: Listener,
    cli_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    anvil = devchain.anvil
    mint_some(devchain, 2, per_block=2)
    (old,) = chain_deliveries(anvil.rpc_batch, devchain.glisk)
    assert webhook.post(old).status_code == 200
    first, second = sorted(devchain.mints(), key=lambda m: m.start_token_id)
    generating, revealed = first.start_token_id, second.start_token_id + second.quantity - 1
    move_on(pg_engine, generating, "generating", generation_attempts=1)
    move_on(pg_engine, revealed, "revealed", image_url="ipfs://revealed")
    kept = {t: token_row(pg_engine, t) for t in (generating, revealed)}
    listener.drain()

    # the block is replaced by an empty one: Alchemy sends its new view, a heartbeat
    number = old["event"]["data"]["block"]["number"]
    anvil.rpc("anvil_reorg", [1, []])
    block = anvil.rpc("eth_getBlockByNumber", [hex(number), False])
    assert block["hash"] != old["event"]["data"]["block"]["hash"]
    heartbeat = delivery(
        {"number": number, "hash": block["hash"], "timestamp": int(block["timestamp"], 16)},
        sequence_number=SEQUENCE_BASE + 10**6,
    )
    answer = webhook.post(heartbeat)
    assert answer.status_code == 200, answer.text
    assert answer.json()["removed"] == 2
    # the detected rows of both removed mints left; the two moved on stay as they were
    assert token_ids(pg_engine) == [generating, revealed]
    assert {t: token_row(pg_engine, t) for t in (generating, revealed)} == kept
    assert listener.drain() == [{"orphaned": [[generating, generating], [revealed, revealed]]}]

    for key, value in cli_env.items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    assert status.main(["--json"]) == 4
    report = json.loads(capsys.readouterr().out)
    assert "no_orphaned_tokens" in report["failing"]
    assert report["downstream"]["orphaned_token_ids"] == [generating, revealed]
    assert report["downstream"]["orphaned_by_status"] == {"generating": 1, "revealed": 1}
    assert any(f"{generating}, {revealed}" in line for line in report["problems"])
    assert status.main(["--prometheus"]) == 4
    assert "\nglisk_orphaned_tokens 2\n" in capsys.readouterr().out


def test_a_new_mint_on_a_row_a_worker_holds_is_refused_at_once_then_moves_it_aside(
    webhook: Service, devchain: DevChain, pg_url: str, pg_engine: Engine
) -> None:
    anvil = devchain.anvil
    mint_some(devchain, 1, per_block=1)
    (old,) = chain_deliveries(anvil.rpc_batch, devchain.glisk)
    assert webhook.post(old).status_code == 200
    (mint,) = devchain.mints()
    held = mint.start_token_id
    # the winning fork has another mint in that block, of the same token ids
    replacement = mint_tx(
        devchain.glisk, DEV_ACCOUNTS[7], DEV_ACCOUNTS[8], 3, DEFAULT_MINT_PRICE * 3
    )
    anvil.rpc("anvil_reorg", [1, [[replacement, 0]]])
    (new,) = chain_deliveries(
        anvil.rpc_batch, devchain.glisk, old["event"]["data"]["block"]["number"]
    )
    new["event"]["sequenceNumber"] = str(SEQUENCE_BASE + 10**6)
    (rival,) = devchain.mints()
    assert rival.start_token_id == held

    worker = psycopg.connect(libpq_conninfo(pg_url))
    try:  # a worker generating the image of the old mint's token, row locked
        worker.execute("SELECT 1 FROM tokens WHERE token_id = %s FOR UPDATE", (held,))
        worker.execute("UPDATE tokens SET status = 'generating' WHERE token_id = %s", (held,))
        started = time.monotonic()
        refused = webhook.post(new)
        assert time.monotonic() - started < 2
        assert refused.status_code == 409, refused.text
        assert refused.json()["code"] == "TOKEN_CONFLICT"
        assert "worker" in refused.json()["message"]
        worker.commit()
    finally:
        worker.close()
    retried = webhook.post(new)  # Alchemy's retry, once the worker let go
    assert retried.status_code == 200, retried.text
    assert token_row(pg_engine, held)["status"] == "detected"  # type: ignore[index]
    with pg_engine.connect() as conn:
        aside = conn.execute(select(orphaned_tokens.c.token_id, orphaned_tokens.c.status)).all()
    assert aside == [(held, "generating")]
    assert token_ids(pg_engine) == list(range(held, held + 3))
