"""A stalled database (a dead route, a frozen server: nothing answers, nothing closes)
must not hold a delivery past Alchemy's 5 s timeout: every delivery is answered within the
sidecar's budget (WEBHOOK_ANSWER_BUDGET_SECONDS, 4 s by default), the ones the stall cut
off with 500 INTERNAL_ERROR, nothing half-written, and Alchemy's retry after the stall
stores each log exactly once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url

from devtools.replay import chain_deliveries, signed
from glisk_pipeline.db.schema import mint_events, tokens
from tests.support.fixtures_chain import DevChain
from tests.webhook.helpers import NEW_KEY, TcpProxy, running, service_env
from tests.webhook.test_deliveries import assert_tables_match_chain, mint_some

STALL_S = 12
ALCHEMY_TIMEOUT_S = 5  # Alchemy gives up on a delivery after 5 s
WAVES_AT_S = (0, 3, 6, 9)  # deliveries sent at these moments into the stall
PER_WAVE = 3


def _events_per_token_count(engine: Engine) -> list[tuple[int, int]]:
    """(quantity, token rows) of every live event: equal unless something is half-written."""
    with engine.connect() as conn:
        return conn.execute(
            select(mint_events.c.quantity, func.count(tokens.c.token_id))
            .outerjoin(tokens, tokens.c.mint_event_id == mint_events.c.id)
            .where(~mint_events.c.removed)
            .group_by(mint_events.c.id)
        ).all()


@pytest.mark.slow
def test_a_stalled_database_gets_an_answer_in_time_and_the_retry_stores_once(
    pg_url: str, pg_engine: Engine, devchain: DevChain, tmp_path: Path
) -> None:
    mint_some(devchain, 2 + len(WAVES_AT_S) * PER_WAVE, per_block=1)
    deliveries = chain_deliveries(devchain.anvil.rpc_batch, devchain.glisk)
    warm, stalled = deliveries[:2], deliveries[2:]
    url = make_url(pg_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    env = service_env(proxy.url_for(pg_url), devchain.glisk)
    # The client waits as long as Alchemy does: an answer later than that is a failure.
    client = httpx.Client(timeout=ALCHEMY_TIMEOUT_S)
    answers: dict[int, tuple[int, str, float]] = {}

    def post(base: str, i: int) -> None:
        body, headers = signed(stalled[i], NEW_KEY)
        started = time.monotonic()
        answer = client.post(f"{base}/webhooks/alchemy", content=body, headers=headers)
        code = answer.json().get("code") or answer.json().get("status")
        answers[i] = (answer.status_code, code, time.monotonic() - started)

    try:
        with running(env, tmp_path) as service:
            for payload in warm:  # the pool holds live connections when the stall begins
                assert service.post(payload).status_code == 200
            proxy.blackhole()
            begun = time.monotonic()
            threads = []
            for wave, at in enumerate(WAVES_AT_S):
                time.sleep(max(0.0, begun + at - time.monotonic()))
                for k in range(PER_WAVE):
                    thread = threading.Thread(target=post, args=(service.url, wave * PER_WAVE + k))
                    thread.start()
                    threads.append(thread)
            for thread in threads:
                thread.join()
            # nothing half-written while the database is unreachable
            assert all(q == n for q, n in _events_per_token_count(pg_engine))
            time.sleep(max(0.0, begun + STALL_S - time.monotonic()))
            proxy.up()

            # every delivery was answered in time (no httpx timeout above), as a 500
            assert sorted(answers) == list(range(len(stalled)))
            assert {(status, code) for status, code, _ in answers.values()} == {
                (500, "INTERNAL_ERROR")
            }
            longest = max(seconds for _, _, seconds in answers.values())
            print(f"longest answer during a {STALL_S} s stall: {longest:.2f} s")

            # Alchemy retries: each delivery stored once (or found already stored, if the
            # cut-off call reached the server after the stall and committed whole)
            retried = [service.post(payload) for payload in stalled]
            assert {r.status_code for r in retried} <= {200, 409}, [r.text for r in retried]
            again = [service.post(payload).status_code for payload in stalled]
            assert set(again) == {409}
    finally:
        client.close()
        proxy.close()
    assert all(q == n for q, n in _events_per_token_count(pg_engine))
    assert_tables_match_chain(pg_engine, devchain.mints(), set())
