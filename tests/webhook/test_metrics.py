"""The sidecar's operator metrics on /metrics, scraped from the real service: detection
lag of newly stored mints, the last delivered block and when it arrived, and refused
signatures."""

from __future__ import annotations

import time

from devtools.anvil import DEFAULT_MINT_PRICE, DEV_ACCOUNTS
from devtools.history import Mint, mint_batches
from devtools.replay import chain_deliveries, signed
from tests.support.fixtures_chain import DevChain
from tests.webhook.helpers import NEW_KEY, Service


def sample(text: str, name: str) -> float:
    """The value of an unlabelled sample (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_detection_lag_last_block_and_rejected_signatures(
    webhook: Service, devchain: DevChain
) -> None:
    mints = [Mint(DEV_ACCOUNTS[1], DEV_ACCOUNTS[2], q, q * DEFAULT_MINT_PRICE) for q in (1, 2, 3)]
    mint_batches(devchain.anvil, devchain.glisk, mints)
    deliveries = chain_deliveries(devchain.anvil.rpc_batch, devchain.glisk)
    logs = sum(len(d["event"]["data"]["block"]["logs"]) for d in deliveries)
    before = webhook.http.get("/metrics").text
    sent_after = time.time()
    for payload in deliveries:
        body, headers = signed(payload, NEW_KEY)
        assert webhook.http.post("/webhooks/alchemy", content=body, headers=headers).is_success
    # the same deliveries again: duplicates are no new detection
    for payload in deliveries:
        body, headers = signed(payload, NEW_KEY)
        webhook.http.post("/webhooks/alchemy", content=body, headers=headers)
    webhook.http.post("/webhooks/alchemy", content=b"{}", headers={"x-alchemy-signature": "00"})
    after = webhook.http.get("/metrics").text

    lag = "glisk_webhook_detection_lag_seconds"
    assert sample(after, lag + "_count") - sample(before, lag + "_count") == logs == 3
    assert f'{lag}_bucket{{le="+Inf"}}' in after
    last_block = max(d["event"]["data"]["block"]["number"] for d in deliveries)
    assert sample(after, "glisk_webhook_last_block_number") >= last_block
    arrived = sample(after, "glisk_webhook_last_delivery_timestamp_seconds")
    assert sent_after <= arrived  # set by this test's deliveries
    assert arrived <= time.time()
    rejected = "glisk_webhook_rejected_signatures_total"
    assert sample(after, rejected) == sample(before, rejected) + 1
