"""The service around the endpoint: start-up checks, health, metrics, OpenAPI, logs,
the duplicate-status setting, and exactly-once across two uvicorn workers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, func, select

from devtools.anvil import DEFAULT_MINT_PRICE, DEV_ACCOUNTS
from devtools.history import Mint, mint_batches
from devtools.replay import chain_deliveries, signed
from glisk_pipeline.db.schema import mint_events, tokens
from glisk_pipeline.settings import load_settings
from tests.support.fixtures_chain import DevChain
from tests.webhook.helpers import (
    NEW_KEY,
    OLD_KEY,
    REPO,
    Service,
    one_mint_delivery,
    running,
    service_env,
)
from webhook_service.app import create_app
from webhook_service.signature import sign


def test_importing_the_app_does_not_load_dagster() -> None:
    code = "import sys, webhook_service.app; print('dagster' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    "missing",
    ["ALCHEMY_WEBHOOK_SECRET", "GLISK_NFT_CONTRACT_ADDRESS", "GLISK_DEFAULT_AUTHOR_WALLET"],
)
def test_refuses_to_start_without_required_settings(tmp_path: Path, missing: str) -> None:
    env = service_env("sqlite:///x.db", "0x" + "11" * 20)
    env[missing] = ""
    if missing == "ALCHEMY_WEBHOOK_SECRET":
        env[missing] = " , "  # set, but holds no key
    out = subprocess.run(
        [sys.executable, "-m", "webhook_service"],
        env={"PATH": "/usr/bin:/bin", **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and missing in lines[0], out.stderr
    assert OLD_KEY not in out.stderr and NEW_KEY not in out.stderr


def test_health_readiness_and_openapi(webhook: Service) -> None:
    assert webhook.http.get("/healthz").json() == {"status": "ok", "detail": None}
    assert webhook.http.get("/readyz").json() == {"status": "ok", "detail": None}
    schema = webhook.http.get("/openapi.json").json()
    post = schema["paths"]["/webhooks/alchemy"]["post"]
    body_ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert body_ref == "#/components/schemas/AlchemyDelivery"
    delivery = schema["components"]["schemas"]["AlchemyDelivery"]
    assert set(delivery["required"]) == {"webhookId", "id", "type", "event"}
    assert {"200", "400", "401", "409", "413", "500"} <= set(post["responses"])
    assert "GraphqlLog" in schema["components"]["schemas"]


def test_start_up_objects_are_frozen_out_of_the_collector(webhook: Service) -> None:
    # A full collection otherwise walks every module, route and model each worker holds:
    # 46-153 ms each under load, a stall for every delivery queued on that worker.
    # complete lines only: a worker may be writing the next line while we read the file
    *complete, _ = webhook.log().split("\n")
    lines = [line for line in complete if line.startswith("{")]
    ready = [r for r in map(orjson.loads, lines) if r["event"] == "webhook sidecar ready"]
    assert ready, "no worker logged that it is ready"
    # FastAPI, pydantic, SQLAlchemy and psycopg alone are well over 10,000 objects
    assert all(r["frozen_objects"] > 10_000 for r in ready), ready


def test_metrics_count_deliveries_by_outcome(webhook: Service) -> None:
    def counter(text: str, outcome: str) -> float:
        for line in text.splitlines():
            if line.startswith(f'glisk_webhook_deliveries_total{{outcome="{outcome}"}}'):
                return float(line.split()[-1])
        return 0.0

    before = webhook.http.get("/metrics").text
    webhook.http.post("/webhooks/alchemy", content=b"{}", headers={"x-alchemy-signature": "0"})
    after = webhook.http.get("/metrics").text
    assert counter(after, "unauthorized") == counter(before, "unauthorized") + 1
    assert "glisk_webhook_request_seconds_bucket" in after


def test_logs_are_json_with_context_and_never_hold_secrets(
    webhook: Service, devchain: DevChain
) -> None:
    mint_batches(
        devchain.anvil,
        devchain.glisk,
        [Mint(DEV_ACCOUNTS[1], DEV_ACCOUNTS[2], 3, 3 * DEFAULT_MINT_PRICE)],
    )
    (payload,) = chain_deliveries(devchain.anvil.rpc_batch, devchain.glisk)
    body, headers = signed(payload, NEW_KEY)
    start = len(webhook.log_path.read_bytes())
    assert webhook.http.post("/webhooks/alchemy", content=body, headers=headers).status_code == 200
    wrong = dict(headers, **{"x-alchemy-signature": headers["x-alchemy-signature"][::-1]})
    assert webhook.http.post("/webhooks/alchemy", content=body, headers=wrong).status_code == 401
    written = webhook.log_path.read_bytes()[start:].decode()
    for secret in (OLD_KEY, NEW_KEY, headers["x-alchemy-signature"], wrong["x-alchemy-signature"]):
        assert secret not in written
        assert secret[:16] not in written  # not even a prefix
    records = [orjson.loads(line) for line in written.splitlines() if line.startswith("{")]
    stored = next(r for r in records if r["event"] == "mint stored")
    log = payload["event"]["data"]["block"]["logs"][0]
    assert stored["tx_hash"] == log["transaction"]["hash"] and stored["log_index"] == log["index"]
    assert stored["webhook_id"] == payload["webhookId"] and stored["event_id"] == payload["id"]
    assert stored["block_number"] == payload["event"]["data"]["block"]["number"]
    assert len(stored["token_ids"]) == 3
    rejected = next(r for r in records if r.get("outcome") == "unauthorized")
    assert rejected["signature_present"] is True and rejected["signature_len"] == 64


def test_duplicate_status_200_never_makes_alchemy_retry(
    pg_url: str, pg_engine: Engine, devchain: DevChain, tmp_path: Path
) -> None:
    payload = one_mint_delivery(devchain)
    env = service_env(pg_url, devchain.glisk, WEBHOOK_DUPLICATE_STATUS="200")
    with running(env, tmp_path) as service:
        assert service.post(payload).json()["status"] == "success"
        again = service.post(payload)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"


@pytest.mark.slow
def test_two_workers_store_each_log_exactly_once(
    pg_url: str, pg_engine: Engine, devchain: DevChain, tmp_path: Path
) -> None:
    mints = [
        Mint(DEV_ACCOUNTS[i % 10], DEV_ACCOUNTS[(i + 3) % 10], 1 + i % 50, DEFAULT_MINT_PRICE * 50)
        for i in range(60)
    ]
    mint_batches(devchain.anvil, devchain.glisk, mints, per_block=2)
    deliveries = chain_deliveries(devchain.anvil.rpc_batch, devchain.glisk)
    copies = 4  # every delivery sent 4 times at once, as retries and replicas would
    requests = [signed(p, NEW_KEY) for p in deliveries for _ in range(copies)]
    env = service_env(pg_url, devchain.glisk, WEBHOOK_WORKERS="2")
    with running(env, tmp_path) as service:
        url = f"{service.url}/webhooks/alchemy"

        def post(request: tuple[bytes, dict[str, str]]) -> int:
            return service.http.post(url, content=request[0], headers=request[1]).status_code

        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(post, requests))
        metrics = service.http.get("/metrics").text
    assert set(statuses) <= {200, 409}
    # one delivery's logs are stored all-or-nothing: exactly one copy of each wins
    for i in range(len(deliveries)):
        assert statuses[i * copies : (i + 1) * copies].count(200) == 1
    with pg_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(mint_events)).scalar_one() == 60
        assert conn.execute(select(func.count()).select_from(tokens)).scalar_one() == sum(
            m.quantity for m in mints
        )
    # /metrics sums both workers (multiprocess mode)
    total = sum(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("glisk_webhook_deliveries_total{")
    )
    assert total == len(requests)


def test_the_docs_say_how_to_run_and_connect_the_sidecar() -> None:
    # how to run it and what it answers (docs/webhook.md); the Alchemy webhook's GraphQL
    # query and the duplicate status behind Alchemy (the runbook)
    webhook = (REPO / "docs" / "webhook.md").read_text()
    runbook = (REPO / "docs" / "operations.md").read_text()
    for needle in ("python -m webhook_service", "WEBHOOK_DUPLICATE_STATUS"):
        assert needle in webhook
    for needle in (
        "logs(filter:",
        "`WEBHOOK_DUPLICATE_STATUS` | `409` (every deployment file sets `200`)",
    ):
        assert needle in runbook
    assert "docs/webhook.md" in (REPO / "README.md").read_text()


def test_deliveries_answered_ahead_of_fastapi_and_through_its_route_alike(
    pg_url: str, pg_engine: Engine, devchain: DevChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app answers POST /webhooks/alchemy before FastAPI's routing (app.py); mounted
    under a prefix, the same delivery reaches the FastAPI route (routes.py). Both paths
    store a log once and give the same answers; other methods still get FastAPI's."""
    payload = one_mint_delivery(devchain)
    body = orjson.dumps(payload)
    headers = {"content-type": "application/json", "x-alchemy-signature": sign(body, NEW_KEY)}
    forged = {**headers, "x-alchemy-signature": sign(body, "whsec_not_ours")}
    for name, value in service_env(pg_url, devchain.glisk).items():
        monkeypatch.setenv(name, value)
    app = create_app(load_settings())
    outer = FastAPI()
    outer.mount("/prefix", app)

    async def exchange() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            direct = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t")
            routed = httpx.AsyncClient(transport=httpx.ASGITransport(outer), base_url="http://t")
            path = "/webhooks/alchemy"
            return [
                await direct.post(path, content=body, headers=headers),
                await routed.post("/prefix" + path, content=body, headers=headers),
                await direct.post(path, content=body, headers=headers),
                await routed.post("/prefix" + path, content=body, headers=forged),
                await direct.post(path, content=body, headers=forged),
                await direct.get(path),
            ]

    stored, dup_routed, dup_direct, bad_routed, bad_direct, get = asyncio.run(exchange())
    assert stored.status_code == 200 and stored.json()["status"] == "success"
    assert dup_routed.status_code == dup_direct.status_code == 409
    assert dup_routed.json() == dup_direct.json() and dup_direct.json()["status"] == "duplicate"
    assert bad_routed.status_code == bad_direct.status_code == 401
    assert bad_routed.json() == bad_direct.json()
    assert get.status_code == 405  # FastAPI's answer: the shortcut takes POST only
    with pg_engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(mint_events)) == 1
