"""X-Alchemy-Signature: checked on the raw bytes, against every configured key, before
anything else; a bad signature never reaches the parser or the database."""

from __future__ import annotations

import hashlib
import hmac
import socket

import httpx
import orjson
import pytest
from sqlalchemy import Engine, func, select

from devtools.anvil import DEFAULT_MINT_PRICE, DEV_ACCOUNTS
from devtools.history import mint_batches
from devtools.replay import chain_deliveries, delivery
from glisk_pipeline.db.schema import mint_events, webhook_blocks
from tests.support.fixtures_chain import DevChain
from tests.webhook.helpers import NEW_KEY, OLD_KEY, Service
from webhook_service.signature import sign, verify

URL = "/webhooks/alchemy"
LIMIT = 1024 * 1024  # WEBHOOK_MAX_BODY_BYTES default


def test_sign_is_hex_hmac_sha256_of_the_raw_bytes() -> None:
    body = '{"ü": "✓"}'.encode()
    expected = hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert sign(body, "k") == expected
    assert verify(body, expected, (b"x", b"k"))
    assert verify(body, expected.upper(), (b"k",))  # hex is case-insensitive
    assert not verify(body + b" ", expected, (b"k",))
    assert not verify(body, expected, ())
    for bad in (None, "", "zz" * 32, expected[:-1], expected + "0", " " + expected[1:]):
        assert not verify(body, bad, (b"k",))


@pytest.fixture
def minted_delivery(devchain: DevChain) -> dict:
    mint_batches(
        devchain.anvil,
        devchain.glisk,
        [(DEV_ACCOUNTS[1], DEV_ACCOUNTS[2], 2, 2 * DEFAULT_MINT_PRICE)],
    )
    (payload,) = chain_deliveries(devchain.anvil.rpc_batch, devchain.glisk)
    return payload


def rows(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(mint_events)).scalar_one(),
            conn.execute(select(func.count()).select_from(webhook_blocks)).scalar_one(),
        )


def _post(webhook: Service, body: bytes, signature: str | None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers["x-alchemy-signature"] = signature
    return webhook.http.post(URL, content=body, headers=headers)


def test_both_rotated_keys_are_accepted(
    webhook: Service, minted_delivery: dict, pg_engine: Engine
) -> None:
    body = orjson.dumps(minted_delivery)
    assert _post(webhook, body, sign(body, OLD_KEY)).status_code == 200
    assert _post(webhook, body, sign(body, NEW_KEY)).status_code == 409  # same logs again
    assert rows(pg_engine) == (1, 1)


@pytest.mark.parametrize(
    "make_signature",
    [
        pytest.param(lambda body: None, id="missing"),
        pytest.param(lambda body: "", id="empty"),
        pytest.param(lambda body: "not-hex-" + "g" * 56, id="non-hex"),
        pytest.param(lambda body: sign(body, NEW_KEY)[:32], id="truncated"),
        pytest.param(lambda body: sign(body, "some-other-key"), id="wrong-key"),
        pytest.param(lambda body: sign(body + b" ", NEW_KEY), id="tampered-body"),
        pytest.param(lambda body: sign(body, NEW_KEY[:-1]), id="key-prefix"),
        pytest.param(lambda body: sign(body, f"{OLD_KEY},{NEW_KEY}"), id="whole-setting"),
    ],
)
def test_bad_signatures_are_401_and_store_nothing(
    webhook: Service, minted_delivery: dict, pg_engine: Engine, make_signature
) -> None:
    body = orjson.dumps(minted_delivery)
    answer = _post(webhook, body, make_signature(body))
    assert answer.status_code == 401
    assert answer.json() == {
        "status": "error",
        "message": "invalid signature",
        "code": "INVALID_SIGNATURE",
    }
    assert rows(pg_engine) == (0, 0)


def test_signature_covers_the_exact_bytes_not_the_json(
    webhook: Service, minted_delivery: dict, pg_engine: Engine
) -> None:
    """Re-serialising changes the bytes: the same JSON with other whitespace is refused."""
    body = orjson.dumps(minted_delivery)
    pretty = orjson.dumps(minted_delivery, option=orjson.OPT_INDENT_2)
    assert _post(webhook, pretty, sign(body, NEW_KEY)).status_code == 401
    assert _post(webhook, pretty, sign(pretty, NEW_KEY)).status_code == 200


def test_unicode_body_is_verified_on_its_bytes(webhook: Service, pg_engine: Engine) -> None:
    payload = delivery({"number": 5, "hash": "0x" + "ab" * 32, "timestamp": 10})
    payload["webhookId"] = "wh_ünïcødé_✓_🦊"
    body = orjson.dumps(payload)
    assert _post(webhook, body, sign(body, NEW_KEY)).status_code == 200
    assert _post(webhook, body, sign(body.decode().encode("utf-16"), NEW_KEY)).status_code == 401
    not_utf8 = b'{"webhookId": "\xff\xfe"}'
    answer = _post(webhook, not_utf8, sign(not_utf8, NEW_KEY))
    assert answer.status_code == 400 and answer.json()["code"] == "INVALID_PAYLOAD"


def _padded(size: int) -> bytes:
    """A valid heartbeat of exactly `size` bytes (Alchemy ignores unknown fields; so do we)."""
    payload = delivery({"number": 6, "hash": "0x" + "cd" * 32, "timestamp": 12})
    payload["padding"] = ""
    payload["padding"] = "x" * (size - len(orjson.dumps(payload)))
    body = orjson.dumps(payload)
    assert len(body) == size
    return body


def test_one_mib_bodies_at_the_limit_pass_and_over_it_are_413(
    webhook: Service, pg_engine: Engine
) -> None:
    at_limit = _padded(LIMIT)
    assert _post(webhook, at_limit, sign(at_limit, NEW_KEY)).status_code == 200
    assert _post(webhook, at_limit, "0" * 64).status_code == 401
    over = _padded(LIMIT + 1)
    answer = _post(webhook, over, sign(over, NEW_KEY))
    assert answer.status_code == 413 and answer.json()["code"] == "PAYLOAD_TOO_LARGE"


def _raw_request(webhook: Service, head: str, body_parts: list[bytes]) -> bytes:
    """Send a request over a bare socket WITHOUT finishing its body, then read the
    answer. A server that waited for the whole body would never answer (timeout)."""
    with socket.create_connection(("127.0.0.1", webhook.port), timeout=5) as sock:
        sock.sendall(head.encode())
        for part in body_parts:
            sock.sendall(part)
        return sock.recv(4096)


def test_oversized_chunked_body_is_refused_while_streaming(webhook: Service) -> None:
    """No Content-Length: the server counts while reading and answers past the limit,
    although the body (never terminated here) goes on."""
    head = (
        f"POST {URL} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"X-Alchemy-Signature: {'0' * 64}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
    answer = _raw_request(webhook, head, [chunk] * (LIMIT // 0x10000 + 1))
    assert answer.startswith(b"HTTP/1.1 413")


def test_declared_length_over_the_limit_is_refused_before_reading(webhook: Service) -> None:
    head = (
        f"POST {URL} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"X-Alchemy-Signature: {'0' * 64}\r\nContent-Length: {2 * LIMIT}\r\n\r\n"
    )
    answer = _raw_request(webhook, head, [b"{"])
    assert answer.startswith(b"HTTP/1.1 413")
