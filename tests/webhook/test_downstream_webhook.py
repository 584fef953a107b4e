"""The downstream contract through the running sidecar, on anvil: a worker LISTENing gets
every stored token id once, and a reorg delivered as a heartbeat keeps the rows a worker
moved on (orphaned), which `glisk status` then names and fails on."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from devtools.replay import SEQUENCE_BASE, chain_deliveries, delivery
from glisk_pipeline.cli import status
from tests.downstream_support import Listener, announced, move_on, token_ids, token_row
from tests.fixtures_chain import DevChain
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
