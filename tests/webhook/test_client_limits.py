"""One misbehaving client must not close the live path: per-client caps and source checks at
accept, shedding idle or half-sent connections when a worker is full, X-Forwarded-For only
from trusted proxies. Real sockets against `python -m webhook_service`; different clients
are different loopback source addresses (all of 127.0.0.0/8 is loopback on Linux)."""

from __future__ import annotations

import contextlib
import json
import math
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from devtools.anvil import DEFAULT_MINT_PRICE, DEV_ACCOUNTS
from devtools.history import Mint, mint_batches
from devtools.replay import chain_deliveries, signed
from tests.support.fixtures_chain import DevChain
from tests.webhook.helpers import NEW_KEY, REPO, Service, TcpProxy, running, service_env
from tests.webhook.test_hostile_clients import head, stored

ATTACKER, SLOW_SENDER, ALCHEMY, OTHER = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.6"
PROXY = "127.0.0.9"
PATIENCE_S = 5.0  # Alchemy's delivery timeout: an answer later than this is a failure


def deliveries(devchain: DevChain, n: int) -> list[dict[str, Any]]:
    """n deliveries as Alchemy would send them, one mint in each of n fresh blocks."""
    mints = [Mint(DEV_ACCOUNTS[i % 10], DEV_ACCOUNTS[1], 1, DEFAULT_MINT_PRICE) for i in range(n)]
    mint_batches(devchain.anvil, devchain.glisk, mints, per_block=1)
    return chain_deliveries(devchain.anvil.rpc_batch, devchain.glisk)


def deliver_from(service: Service, source: str, payload: dict[str, Any]) -> tuple[int, float]:
    """POST one signed delivery on a fresh connection from `source`: (status or 0, seconds)."""
    body, headers = signed(payload, NEW_KEY)
    transport = httpx.HTTPTransport(local_address=source)
    started = time.monotonic()
    try:
        with httpx.Client(base_url=service.url, transport=transport, timeout=PATIENCE_S) as http:
            status = http.post("/webhooks/alchemy", content=body, headers=headers).status_code
    except httpx.TransportError:
        status = 0
    return status, time.monotonic() - started


def exchange(port: int, source: str, request: bytes) -> bytes:
    """Send `request` from `source`; everything the server sends until it closes."""
    received = b""
    with socket.socket() as sock:
        sock.settimeout(PATIENCE_S * 2)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(request)
            while chunk := sock.recv(65536):
                received += chunk
    return received


def signed_request(payload: dict[str, Any], forwarded_for: str | None = None) -> bytes:
    body, headers = signed(payload, NEW_KEY)
    lines = [b"POST /webhooks/alchemy HTTP/1.1", b"host: sidecar", b"connection: close"]
    lines += [f"{name}: {value}".encode() for name, value in headers.items()]
    lines.append(b"content-length: %d" % len(body))
    if forwarded_for is not None:
        lines.append(f"x-forwarded-for: {forwarded_for}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def metric(service: Service, name: str, label: str) -> float:
    text = service.http.get("/metrics").text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and label in line:
            total += float(line.split()[-1])
    return total


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def flood(
    port: int, source: str, connections: int, mode: str, seconds: float, *more: str
) -> subprocess.Popen:
    """tests/webhook/flood_client.py as its own process (its busy loop off our GIL)."""
    argv = [sys.executable, "-m", "tests.webhook.flood_client", "--port", str(port)]
    argv += ["--source", source, "--connections", str(connections)]
    argv += ["--mode", mode, "--seconds", str(seconds), *more]
    return subprocess.Popen(
        argv, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def flood_report(proc: subprocess.Popen) -> dict[str, int]:
    """Stop the flood (its stdin closes) and read what it saw."""
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    report: dict[str, int] = json.loads(out.strip().splitlines()[-1])
    return report


@pytest.mark.slow
def test_one_client_holding_2000_connections_does_not_close_the_live_path(
    pg_url: str, pg_engine: Engine, devchain: DevChain, tmp_path: Path
) -> None:
    # The defaults of `python -m webhook_service` (2 workers, 256 connections and 32 per
    # client per worker, 10 s read timeout), as an operator runs it.
    # the flood client raises its soft descriptor limit to the hard one (2,000+ sockets)
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 2300:
        pytest.skip("the hard limit on open files (ulimit -Hn) is below 2,300")
    seconds, spacing = 30.0, 0.2
    payloads = deliveries(devchain, int(seconds / spacing))
    env = service_env(pg_url, devchain.glisk, WEBHOOK_WORKERS="2")
    with running(env, tmp_path) as service:
        heads = flood(service.port, ATTACKER, 2000, "head", seconds + 2)
        bodies = flood(service.port, SLOW_SENDER, 200, "body", seconds + 2)
        try:
            time.sleep(2)  # the floods are at full strength before the first delivery
            results = []
            started = time.monotonic()
            for i, payload in enumerate(payloads):
                time.sleep(max(0.0, started + i * spacing - time.monotonic()))
                results.append(deliver_from(service, ALCHEMY, payload))
        finally:
            head_report, body_report = flood_report(heads), flood_report(bodies)
        refused = metric(service, "glisk_webhook_refused_connections_total", "client_cap")
    answered = [elapsed for status, elapsed in results if status == 200 and elapsed < PATIENCE_S]
    share = len(answered) / len(results)
    latency_p99 = p99([elapsed for _, elapsed in results])
    print(
        f"\n{len(results)} deliveries during the floods: {share:.1%} answered 200 within"
        f" {PATIENCE_S:.0f} s, p99 {latency_p99 * 1000:.0f} ms, statuses"
        f" {sorted({s for s, _ in results})}; head flood {head_report}; body flood"
        f" {body_report}; refused at the per-client cap: {refused:.0f}"
    )
    assert len(answered) >= math.ceil(0.99 * len(results)), results
    assert stored(pg_engine) == sum(status == 200 for status, _ in results)
    # the attack was real: thousands of connections opened, most refused at the cap, and
    # the admitted slow bodies were held until the read deadline (408)
    assert head_report["opened"] >= 2000, head_report
    assert refused > 2000
    assert body_report.get("HTTP/1.1 408", 0) > 0, body_report


def test_when_full_the_oldest_idle_or_half_sent_connection_is_shed_never_a_request(
    pg_url: str, pg_engine: Engine, pg_proxy: TcpProxy, devchain: DevChain, tmp_path: Path
) -> None:
    # A stalled database keeps requests "being processed" for the answer budget (3 s).
    env = service_env(
        pg_proxy.url_for(pg_url),
        devchain.glisk,
        WEBHOOK_MAX_CONNECTIONS="3",
        WEBHOOK_ANSWER_BUDGET_SECONDS="3",
    )
    (payload,) = deliveries(devchain, 1)
    pg_proxy.up()
    with running(env, tmp_path) as service:
        service.http.close()  # its keep-alive connection would hold a slot
        port = service.port
        half = socket.create_connection(("127.0.0.1", port))
        half.sendall(head(extra=b"x-slow: "))  # the oldest: a half-sent head
        time.sleep(0.2)
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        time.sleep(0.2)
        try:
            # the worker is full: a newcomer sheds the connection waiting the longest
            reply = exchange(port, "127.0.0.1", signed_request(payload))
            assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
            half.settimeout(PATIENCE_S)
            assert half.recv(100).startswith(b"HTTP/1.1 503"), "the oldest waiter is shed"
        finally:
            for sock in [half, *idle]:
                sock.close()
        # Now fill every slot with requests in flight (the database stalls), then knock.
        pg_proxy.blackhole()
        try:
            busy = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
            for sock in busy:
                sock.sendall(signed_request(payload))
                sock.settimeout(PATIENCE_S)
            time.sleep(0.5)  # well within the 3 s the stalled database holds them
            knock = exchange(port, "127.0.0.1", b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            answers = [sock.recv(100) for sock in busy]
        finally:
            pg_proxy.up()
            for sock in busy:
                sock.close()
        assert knock == b"", "no slot to shed: the newcomer is closed unread"
        # each request in flight got its answer (500 at the budget), none was cut
        assert all(a.startswith(b"HTTP/1.1 500") for a in answers), answers
        with httpx.Client(base_url=service.url, timeout=10) as http:
            text = http.get("/metrics").text
        assert 'glisk_webhook_shed_connections_total{state="head"} 1.0' in text
        assert 'glisk_webhook_refused_connections_total{reason="busy"} 1.0' in text


def test_allowlist_and_forwarded_for_only_from_a_trusted_proxy(
    pg_url: str, pg_engine: Engine, devchain: DevChain, tmp_path: Path
) -> None:
    listed = ALCHEMY
    env = service_env(
        pg_url,
        devchain.glisk,
        # 127.0.0.1: the test's own /healthz and /metrics
        WEBHOOK_ALLOWED_SOURCES=f"127.0.0.1,{listed}/32",
        WEBHOOK_TRUSTED_PROXIES=f"{PROXY}/32",
        WEBHOOK_MAX_CONNECTIONS_PER_CLIENT="2",
    )
    first, second, third = deliveries(devchain, 3)
    with running(env, tmp_path) as service:
        port = service.port
        # a source not listed gets no byte back, whatever X-Forwarded-For it claims
        assert exchange(port, OTHER, signed_request(first)) == b""
        assert exchange(port, OTHER, signed_request(first, forwarded_for=listed)) == b""
        assert stored(pg_engine) == 0
        # a listed source is served (and its own X-Forwarded-For is ignored)
        reply = exchange(port, listed, signed_request(first, forwarded_for=OTHER))
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
        # through the trusted proxy the client is the rightmost untrusted entry: a client
        # that prepends a listed address is still itself
        assert exchange(port, PROXY, signed_request(second, forwarded_for=OTHER)) == b""
        spoofed = f"{listed}, {OTHER}"
        assert exchange(port, PROXY, signed_request(second, forwarded_for=spoofed)) == b""
        reply = exchange(port, PROXY, signed_request(second, forwarded_for=f"{OTHER}, {listed}"))
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
        assert stored(pg_engine) == 2
        # the per-client cap follows the forwarded client: two requests in flight for
        # `listed` through the proxy, a third is refused, another client is served
        body, _ = signed(third, NEW_KEY)
        in_flight = []
        for _ in range(2):
            sock = socket.create_connection(("127.0.0.1", port), source_address=(PROXY, 0))
            sock.sendall(head(len(body), extra=f"x-forwarded-for: {listed}\r\n\r\n".encode()))
            in_flight.append(sock)
        time.sleep(0.2)
        try:
            assert exchange(port, PROXY, signed_request(third, forwarded_for=listed)) == b""
            reply = exchange(port, PROXY, signed_request(third, forwarded_for="127.0.0.1"))
            assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
        finally:
            for sock in in_flight:
                sock.close()
        refused = metric(service, "glisk_webhook_refused_connections_total", "not_allowed")
        capped = metric(service, "glisk_webhook_refused_connections_total", "client_cap")
    assert (refused, capped) == (4, 1)
    assert stored(pg_engine) == 3


def test_a_readyz_flood_costs_the_deliveries_nothing(
    pg_url: str, pg_proxy: TcpProxy, devchain: DevChain, tmp_path: Path
) -> None:
    # One pooled connection: every /readyz that queried the database would take it from
    # the deliveries. Duplicates are answered 200 and cost the same database call.
    env = service_env(
        pg_proxy.url_for(pg_url),
        devchain.glisk,
        DATABASE_POOL_SIZE="1",
        DATABASE_MAX_OVERFLOW="0",
        WEBHOOK_DUPLICATE_STATUS="200",
    )
    (payload,) = deliveries(devchain, 1)
    body, headers = signed(payload, NEW_KEY)
    pg_proxy.up()

    with running(env, tmp_path) as service, httpx.Client(base_url=service.url) as http:
        latencies = partial(delivery_latencies, http, body, headers)
        assert service.http.get("/readyz").status_code == 200
        time.sleep(1.1)  # past the cache: the next /readyz is one database check
        before = pg_proxy.bytes_to_server
        assert service.http.get("/readyz").status_code == 200
        one_check = pg_proxy.bytes_to_server - before
        probes = flood_readyz(service.port)
        time.sleep(1)
        before = pg_proxy.bytes_to_server
        time.sleep(3)  # the flood alone: how many database checks did it cost?
        flood_checks = (pg_proxy.bytes_to_server - before) / one_check
        served = flood_report(probes).get("HTTP/1.1 200", 0)
        # Delivery p99 without and with the flood, in alternating blocks of 100 so the
        # machine's other load falls on both sides alike: a figure for the notes, not an
        # assertion (a timed assertion on a shared 2-core machine is a coin toss). What
        # is asserted is why it holds: every delivery under the flood answered 200 (in
        # delivery_latencies), and the flood cost ~one database check a second. Without
        # the cache every probe queued for the one connection: p99 x3.98.
        quiet, flooded, served_now = alternate_blocks(latencies, service.port)
        served += served_now
        print(
            f"\ndelivery p99 {p99(quiet) * 1000:.1f} ms quiet, {p99(flooded) * 1000:.1f} ms"
            f" under the flood (x{p99(flooded) / p99(quiet):.2f}; {len(quiet)} deliveries each)"
        )
    print(f"/readyz flood: {served} probes answered 200, {flood_checks:.1f} database checks in 3 s")
    assert served > 2000  # it was a flood (~300/s), and it was answered
    assert flood_checks <= 3 + 2  # ~one a second (the cache), not one per probe


def delivery_latencies(
    http: httpx.Client, body: bytes, headers: dict[str, str], n: int = 100
) -> list[float]:
    out = []
    for _ in range(n):
        started = time.monotonic()
        assert http.post("/webhooks/alchemy", content=body, headers=headers).status_code == 200
        out.append(time.monotonic() - started)
    return out


def alternate_blocks(
    latencies: Callable[[], list[float]], port: int
) -> tuple[list[float], list[float], int]:
    """10 blocks of deliveries without the flood, each followed by one under it."""
    quiet: list[float] = []
    flooded: list[float] = []
    served = 0
    for _ in range(10):
        quiet += latencies()
        probes = flood_readyz(port)
        time.sleep(0.5)  # at full strength
        flooded += latencies()
        served += flood_report(probes).get("HTTP/1.1 200", 0)
    return quiet, flooded, served


def flood_readyz(port: int) -> subprocess.Popen:
    """32 kept-alive connections from 127.0.0.7, each GET /readyz every 100 ms (~300/s)
    until stopped."""
    return flood(port, "127.0.0.7", 32, "readyz", 60, "--interval", "0.1")
