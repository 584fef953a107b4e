"""Hostile clients against a real uvicorn over real sockets: a header flood, hundreds of
stalled heads and bodies, and a connection flood past the per-worker cap (the per-client
limits are in test_client_limits.py). Each time a valid signed delivery sent meanwhile is
stored, and the server's memory stays bounded.

The figures (RSS, close times) are printed for the record (`pytest -s`); the assertions are
about behaviour: refused, closed by the server, memory returned, delivery stored."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, func, select

from devtools.replay import signed
from glisk_pipeline.db.schema import mint_events
from tests.support.fixtures_chain import DevChain
from tests.webhook.helpers import NEW_KEY, Service, one_mint_delivery, running, service_env

MIB = 1024 * 1024
HEAD_LIMIT = 16384  # WEBHOOK_MAX_HEADER_BYTES (its default)
READ_TIMEOUT_S = 2.0  # short, so the test waits little; the default is 10 s
# A socket the server never closes makes recv() give up here: the test then fails.
CLIENT_PATIENCE_S = READ_TIMEOUT_S * 5


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def head(content_length: int | None = None, extra: bytes = b"") -> bytes:
    lines = [
        b"POST /webhooks/alchemy HTTP/1.1",
        b"host: sidecar",
        b"content-type: application/json",
    ]
    if content_length is not None:
        lines.append(b"content-length: %d" % content_length)
    return b"\r\n".join(lines) + b"\r\n" + extra


def connect(service: Service) -> socket.socket:
    return socket.create_connection(("127.0.0.1", service.port), timeout=CLIENT_PATIENCE_S)


def wait_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a timeout raises)."""
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


def stored(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(mint_events)).scalar_one()


@pytest.fixture
def hostile_target(
    pg_url: str, pg_engine: Engine, devchain: DevChain, tmp_path: Path
) -> Iterator[tuple[Service, dict]]:
    """A sidecar with a short read timeout, and one valid delivery for it (not yet sent)."""
    payload = one_mint_delivery(devchain, quantity=2)
    env = service_env(
        pg_url,
        devchain.glisk,
        WEBHOOK_READ_TIMEOUT_SECONDS=str(READ_TIMEOUT_S),
        WEBHOOK_MAX_HEADER_BYTES=str(HEAD_LIMIT),
        WEBHOOK_MAX_CONNECTIONS="400",
        # these floods come from one address: the per-client cap is not what is tested
        WEBHOOK_MAX_CONNECTIONS_PER_CLIENT="400",
    )
    with running(env, tmp_path) as service:
        yield service, payload


def test_header_flood_is_refused_without_buffering(
    hostile_target: tuple[Service, dict], pg_engine: Engine
) -> None:
    service, payload = hostile_target
    before = rss_mib(service.proc.pid)
    flood_bytes = 64 * MIB
    piece = b"a" * (64 * 1024)

    def flood(_: int) -> tuple[int, bytes]:
        """Send one header of up to 64 MiB; return the bytes the server took, its answer."""
        sock = connect(service)
        sent = 0
        with sock, contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head(extra=b"x-flood: "))
            while sent < flood_bytes:
                sock.sendall(piece)
                sent += len(piece)
            return sent, wait_closed(sock)
        return sent, b""

    with ThreadPoolExecutor(8) as pool:
        floods = pool.map(flood, range(8))
        answer = service.post(payload)  # while the floods run
        results = list(floods)
    after = rss_mib(service.proc.pid)
    taken = [sent // 1024 for sent, _ in results]
    print(f"\nheader flood: RSS {before:.1f} -> {after:.1f} MiB; server took {taken} KiB")
    assert answer.status_code == 200, answer.text
    assert stored(pg_engine) == 1
    for sent, reply in results:
        # Cut off after the limit (plus what the kernel buffers), never read whole.
        assert sent < 16 * MIB, sent
        assert reply == b"" or reply.startswith(b"HTTP/1.1 431"), reply[:80]
    assert after - before < 32, (before, after)


def unfinished_get(size: int) -> bytes:
    """The first `size` bytes of a GET /healthz head: one header padded, not ended."""
    start = b"GET /healthz HTTP/1.1\r\nhost: sidecar\r\nconnection: close\r\nx-pad: "
    return start + b"p" * (size - len(start))


def statuses(reply: bytes) -> list[bytes]:
    return re.findall(rb"HTTP/1\.1 (\d{3}) ", reply)


def test_a_head_is_refused_just_past_the_limit_counted_from_where_it_began(
    hostile_target: tuple[Service, dict],
) -> None:
    """The head limit is the protocol's own (httptools has none). A head still unfinished
    one byte past WEBHOOK_MAX_HEADER_BYTES is answered 431 and closed at once, not at the
    read deadline (408); one that reaches the limit and then ends is served; and the bytes
    of a pipelined request before it in the same read, its body included, do not count."""
    service, _ = hostile_target
    with connect(service) as sock:
        sock.sendall(unfinished_get(HEAD_LIMIT + 1))
        assert statuses(wait_closed(sock)) == [b"431"]
    refusals = [json.loads(line) for line in service.log().splitlines() if "head_too_large" in line]
    assert refusals[0]["limit"] == HEAD_LIMIT, refusals  # logged (throttled), as ours are
    with connect(service) as sock:
        sock.sendall(unfinished_get(HEAD_LIMIT))
        sock.sendall(b"\r\n\r\n")
        assert statuses(wait_closed(sock)) == [b"200"]
    body = b"b" * (3 * HEAD_LIMIT)  # more than the limit, before the head in one send
    post = b"POST /healthz HTTP/1.1\r\nhost: sidecar\r\ncontent-length: %d\r\n\r\n" % len(body)
    with connect(service) as sock:
        sock.sendall(post + body + unfinished_get(HEAD_LIMIT))
        sock.sendall(b"\r\n\r\n")
        assert statuses(wait_closed(sock)) == [b"405", b"200"]
    # Past the limit behind a request still being answered: nothing may be written ahead
    # of that answer, so the connection is closed, with or without it, never left to time out.
    with connect(service) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nhost: sidecar\r\n\r\n" + unfinished_get(HEAD_LIMIT + 1)
        )
        assert statuses(wait_closed(sock)) in ([], [b"200"], [b"200", b"431"])


def test_stalled_heads_and_bodies_are_closed_and_freed(
    hostile_target: tuple[Service, dict], pg_engine: Engine
) -> None:
    service, payload = hostile_target
    pid = service.proc.pid
    before = rss_mib(pid)
    bodies, heads = 220, 50
    body_bytes = 1_000_000  # of a declared 1 MiB (the body limit): then silence

    def stall_body(_: int) -> socket.socket:
        sock = connect(service)
        sock.sendall(head(MIB, extra=b"\r\n") + b"{" * body_bytes)
        return sock

    def stall_head(_: int) -> socket.socket:
        sock = connect(service)
        sock.sendall(head(extra=b"x-slow: "))
        return sock

    with ThreadPoolExecutor(16) as pool:
        socks = list(pool.map(stall_body, range(bodies))) + list(pool.map(stall_head, range(heads)))
    started = time.monotonic()
    answer = service.post(payload)  # while every stalled connection is open
    assert answer.status_code == 200, answer.text
    peak = rss_mib(pid)

    closed_after: list[float] = []
    replies: list[bytes] = []
    lock = threading.Lock()

    def closed(sock: socket.socket) -> None:
        with sock:
            reply = wait_closed(sock)
        with lock:
            closed_after.append(time.monotonic() - started)
            replies.append(reply)

    with ThreadPoolExecutor(64) as pool:
        list(pool.map(closed, socks))
    time.sleep(0.5)  # let the app tasks observe the disconnects
    after = rss_mib(pid)
    print(
        f"\n{bodies} stalled bodies + {heads} stalled heads: RSS {before:.1f} -> peak {peak:.1f}"
        f" -> {after:.1f} MiB after close; closed by the server {min(closed_after):.2f}"
        f"-{max(closed_after):.2f} s after the last byte (read timeout {READ_TIMEOUT_S} s)"
    )
    assert stored(pg_engine) == 1
    assert len(replies) == bodies + heads
    assert all(r.startswith(b"HTTP/1.1 408") for r in replies), {r[:40] for r in replies}
    # What the stalled requests held is released (allocator slack allowed).
    assert after - before < 64, (before, peak, after)
    # and the service answers normally afterwards
    assert service.http.get("/healthz").status_code == 200


def test_a_connection_flood_past_the_cap_sheds_the_stalled_not_the_newcomers(
    pg_url: str, pg_engine: Engine, devchain: DevChain, tmp_path: Path
) -> None:
    cap = 20
    env = service_env(
        pg_url,
        devchain.glisk,
        WEBHOOK_READ_TIMEOUT_SECONDS=str(READ_TIMEOUT_S),
        WEBHOOK_MAX_CONNECTIONS=str(cap),
        WEBHOOK_MAX_CONNECTIONS_PER_CLIENT="100",  # all from one address here
        WEBHOOK_REJECTED_LOG_SECONDS="3600",
    )
    with running(env, tmp_path) as service:
        service.http.close()  # its keep-alive connection would hold a slot
        holders = [connect(service) for _ in range(cap)]
        for sock in holders:  # every slot: a body that stopped arriving
            sock.sendall(head(1000, extra=b"\r\n{"))
        newcomers, served = [], []
        for _ in range(30):  # each takes the slot of the connection waiting the longest
            extra = connect(service)
            extra.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"}"):  # the whole JSON answer, then it stays idle
                chunk = extra.recv(65536)
                if not chunk:
                    break  # closed by the server: not served
                answer += chunk
            served.append(answer)
            newcomers.append(extra)
        assert all(r.startswith(b"HTTP/1.1 200") for r in served), {r[:40] for r in served}
        replies = []
        for sock in holders:  # shed first, long before their read deadline
            replies.append(wait_closed(sock))
            sock.close()
        assert all(r.startswith(b"HTTP/1.1 503") for r in replies), {r[:60] for r in replies}
        for sock in newcomers[:10]:  # then the oldest idle ones, with nothing to say
            assert wait_closed(sock) == b""
        for sock in newcomers:
            sock.close()
        # one throttled line for 30 sheds; the metric counts each
        assert service.log().count('"connection shed"') == 1, service.log()[-2000:]
        with httpx.Client(base_url=service.url, timeout=10) as http:
            text = http.get("/metrics").text
        assert 'glisk_webhook_shed_connections_total{state="body"} 20.0' in text
        assert 'glisk_webhook_shed_connections_total{state="idle"} 10.0' in text


def test_a_client_that_never_reads_its_answers_is_dropped(
    hostile_target: tuple[Service, dict],
) -> None:
    # Pipelined requests whose answers (8 MB of them) the client never reads: once the
    # server's buffers are full, it must not keep the connection (a WEBHOOK_MAX_CONNECTIONS
    # slot) for as long as the client stays silent.
    service, _ = hostile_target
    sent = 1000
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(CLIENT_PATIENCE_S * 4)
    with sock:
        sock.connect(("127.0.0.1", service.port))
        sock.sendall(b"GET /openapi.json HTTP/1.1\r\nhost: sidecar\r\n\r\n" * sent)
        time.sleep(READ_TIMEOUT_S * 3)  # silent well past the deadline
        answered = wait_closed(sock).count(b"HTTP/1.1 200 ")
    print(f"\nnever-reading client: {answered} of {sent} answers before the drop")
    assert answered < sent


def test_a_signed_body_slower_than_the_answer_budget_is_stored_not_a_500(
    pg_url: str, pg_engine: Engine, devchain: DevChain, tmp_path: Path
) -> None:
    # The body trickles in over longer than the answer budget (1 s here) but within the read
    # timeout: the database is healthy, so the answer must not be 500 "database unavailable".
    payload = one_mint_delivery(devchain, quantity=1)
    body, headers = signed(payload, NEW_KEY)
    env = service_env(pg_url, devchain.glisk, WEBHOOK_ANSWER_BUDGET_SECONDS="1")
    with running(env, tmp_path) as service:
        request = (
            head(len(body))
            + b"".join(
                f"{name}: {value}\r\n".encode()
                for name, value in headers.items()
                if name != "content-type"
            )
            + b"\r\n"
        )
        with connect(service) as sock:
            sock.sendall(request + body[: len(body) // 2])
            time.sleep(1.5)  # past the answer budget, well within the 10 s read timeout
            sock.sendall(body[len(body) // 2 :])
            reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert stored(pg_engine) == 1


def test_websocket_upgrades_are_served_as_http_and_free_their_slot(
    pg_url: str, pg_engine: Engine, devchain: DevChain, tmp_path: Path
) -> None:
    """The sidecar speaks no WebSocket. A request asking to upgrade is answered as plain
    HTTP, and its connection leaves the connection book when it closes: were it handed to
    uvicorn's WebSocket protocol, the book would never hear of its end, and a client could
    fill its per-client cap (then every slot) with upgrades it has already closed."""
    env = service_env(pg_url, devchain.glisk, WEBHOOK_MAX_CONNECTIONS_PER_CLIENT="2")
    upgrade = (
        b"GET /healthz HTTP/1.1\r\nhost: sidecar\r\nconnection: upgrade\r\nupgrade: websocket\r\n"
        b"sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    with running(env, tmp_path) as service:
        for _ in range(5):  # more than the cap, one after another
            with connect(service) as sock:
                sock.sendall(upgrade)
                reply = sock.recv(65536)
                assert statuses(reply) == [b"200"], reply  # not 101 Switching Protocols
        # The book has released all five: a client at a cap of 2 still gets in.
        assert httpx.get(service.url + "/healthz", timeout=5).status_code == 200
