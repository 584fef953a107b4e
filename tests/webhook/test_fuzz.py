"""Property-based fuzzing of bodies and headers against the running sidecar: never a 5xx,
and never a stored row without a valid signature."""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from devtools.anvil import DEFAULT_MINT_PRICE, DEV_ACCOUNTS
from devtools.history import Mint, mint_batches
from glisk_pipeline.db.schema import mint_events, webhook_blocks
from tests.support.fixtures_chain import DevChain
from tests.webhook.helpers import NEW_KEY, Service
from webhook_service.signature import sign

URL = "/webhooks/alchemy"
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Header values without outer whitespace (HTTP trims it); everything printable else goes.
header_text = st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=80)
# Column bounds and their neighbours: where a value stops being storable.
edge_ints = st.sampled_from([-1, 0, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**78])
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    # strings that fit no column: too long for VARCHAR(128), a NUL byte (PostgreSQL text)
    | st.sampled_from(["0x", "0x" + "ab" * 32, "0x" + "12" * 20, "", "1e999", "w" * 129])
    | st.sampled_from(["\x00", "wh_\x00id", "0x" + "ab" * 31 + "\x00a"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


@pytest.fixture
def real_delivery(devchain: DevChain) -> dict[str, Any]:
    from devtools.replay import chain_deliveries

    mints = [Mint(DEV_ACCOUNTS[1], DEV_ACCOUNTS[2], q, q * DEFAULT_MINT_PRICE) for q in (1, 2)]
    mint_batches(devchain.anvil, devchain.glisk, mints, per_block=2)
    (payload,) = chain_deliveries(devchain.anvil.rpc_batch, devchain.glisk)
    return payload


def _dumps(value: Any) -> bytes:
    # The stdlib writes integers of any size (orjson stops at 64 bits): the server must
    # cope with them.
    return json.dumps(value).encode()


def stored(engine: Engine) -> int:
    with engine.connect() as conn:
        return sum(
            conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (mint_events, webhook_blocks)
        )


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _replace(doc: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    doc = copy.deepcopy(doc)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return doc


def test_unsigned_or_missigned_requests_never_store(
    webhook: Service, real_delivery: dict, pg_engine: Engine
) -> None:
    genuine = orjson.dumps(real_delivery)

    @FUZZ
    @given(
        body=st.one_of(st.just(genuine), st.binary(max_size=2048), json_values.map(_dumps)),
        signature=st.one_of(
            st.none(),
            header_text,
            st.text("0123456789abcdef", min_size=64, max_size=64),
            st.just(sign(genuine, "not-the-key")),
            st.just(sign(genuine + b" ", NEW_KEY)),
        ),
        content_type=st.sampled_from(["application/json", "text/plain", ""]) | header_text,
        extra=st.dictionaries(st.from_regex(r"\A[a-z][a-z0-9-]{0,20}\Z"), header_text, max_size=3),
    )
    def check(body: bytes, signature: str | None, content_type: str, extra: dict) -> None:
        headers = {**extra, "content-type": content_type}
        headers.pop("x-alchemy-signature", None)
        headers.pop("content-length", None)
        headers.pop("transfer-encoding", None)
        if signature is not None:
            headers["x-alchemy-signature"] = signature
        answer = webhook.http.post(URL, content=body, headers=headers)
        assert answer.status_code == 401, (answer.status_code, answer.text)

    check()
    assert stored(pg_engine) == 0
    # control: the genuine body, signed, is stored, so the zero above means something
    headers = {"content-type": "application/json", "x-alchemy-signature": sign(genuine, NEW_KEY)}
    assert webhook.http.post(URL, content=genuine, headers=headers).status_code == 200
    assert stored(pg_engine) == 3


def test_signed_mutations_of_a_real_delivery_never_5xx(
    webhook: Service, real_delivery: dict
) -> None:
    paths = _paths(real_delivery)

    @settings(FUZZ, max_examples=400)
    @given(
        path=st.sampled_from(paths),
        value=edge_ints | json_values,
        content_type=st.sampled_from(["application/json", "application/json; charset=utf-8"]),
    )
    def check(path: tuple, value: Any, content_type: str) -> None:
        body = _dumps(_replace(real_delivery, path, value))
        headers = {"content-type": content_type, "x-alchemy-signature": sign(body, NEW_KEY)}
        answer = webhook.http.post(URL, content=body, headers=headers)
        assert answer.status_code in (200, 400, 409), (path, answer.status_code, answer.text)
        assert answer.json()["status"] in ("success", "duplicate", "error")

    check()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("webhookId", "w" * 129),  # webhook_blocks.webhook_id is VARCHAR(128)
        ("webhookId", "wh_\x00id"),  # PostgreSQL text refuses NUL
        ("sequenceNumber", "1" * 79),  # NUMERIC(78, 0)
        ("sequenceNumber", "12 "),
    ],
)
def test_values_no_column_can_hold_are_400_naming_the_field(
    webhook: Service, real_delivery: dict, pg_engine: Engine, field: str, value: str
) -> None:
    payload = copy.deepcopy(real_delivery)
    if field == "sequenceNumber":
        payload["event"][field] = value
    else:
        payload[field] = value
    answer = webhook.post(payload)
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "INVALID_PAYLOAD" and field in answer.json()["message"]
    assert stored(pg_engine) == 0


def _token_heavy(real_delivery: dict, logs: int, per_log: int) -> dict:
    """The real delivery with `logs` copies of its first BatchMinted log, each minting
    `per_log` tokens from its own start id (decodable, never on the chain)."""
    payload = copy.deepcopy(real_delivery)
    block = payload["event"]["data"]["block"]
    template = block["logs"][0]
    price_word = template["data"][2 + 64 :]
    block["logs"] = []
    for i in range(logs):
        log = copy.deepcopy(template)
        log["index"] = i
        log["topics"][3] = "0x" + f"{1_000_000 + i * per_log:064x}"
        log["data"] = "0x" + f"{per_log:064x}" + price_word
        block["logs"].append(log)
    return payload


def test_a_delivery_over_the_token_bound_is_refused_before_the_database(
    webhook: Service, real_delivery: dict, pg_engine: Engine
) -> None:
    # 150 logs x 10,000 tokens: 1.5M token rows ran into the statement timeout (a 500)
    answer = webhook.post(_token_heavy(real_delivery, logs=150, per_log=10_000))
    assert answer.status_code == 413, answer.text
    body = answer.json()
    assert body["code"] == "PAYLOAD_TOO_LARGE"
    assert "WEBHOOK_MAX_TOKENS_PER_DELIVERY" in body["message"]
    assert stored(pg_engine) == 0
    # control: at the bound (the default, 10,000) the same shape is stored
    at_bound = webhook.post(_token_heavy(real_delivery, logs=2, per_log=5_000))
    assert at_bound.status_code == 200, at_bound.text
    assert len(at_bound.json()["events"]) == 2
