"""A small asyncio HTTP/1.1 load generator over raw streams (keep-alive, Content-Length
only): ~10x cheaper per request than httpx, so the generator is not what we measure.
Its own CPU share is reported with every phase to prove it."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

Request = tuple[bytes, bytes]  # (body, x-alchemy-signature)


@dataclass
class Phase:
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    cpu_s: float = 0.0

    def summary(self) -> dict[str, object]:
        lat = sorted(self.latencies_ms)

        def pct(p: float) -> float:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))], 2) if lat else 0.0

        return {
            "requests": self.sent,
            "per_s": round(self.sent / self.seconds, 1) if self.seconds else 0.0,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "p50_ms": pct(0.50),
            "p95_ms": pct(0.95),
            "p99_ms": pct(0.99),
            "generator_cpu_pct": round(100 * self.cpu_s / self.seconds, 1) if self.seconds else 0,
        }


class _Conn:
    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port = host, port
        self.head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: application/json\r\nX-Alchemy-Signature: "
        ).encode()

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def post(self, body: bytes, signature: bytes) -> int:
        self.writer.write(
            self.head
            + signature
            + b"\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return int(status_line.split()[1])

    def close(self) -> None:
        self.writer.close()


async def _pool(url: str, n: int) -> list[_Conn]:
    hostport, _, path = url.removeprefix("http://").partition("/")
    host, port = hostport.split(":")
    conns = [_Conn(host, int(port), "/" + path) for _ in range(n)]
    await asyncio.gather(*(c.open() for c in conns))
    return conns


async def closed_loop(url: str, requests: Sequence[Request], concurrency: int) -> Phase:
    """Every connection sends its next request as soon as the last answered: the maximum."""
    conns = await _pool(url, concurrency)
    phase, it = Phase(), iter(requests)

    async def worker(conn: _Conn) -> None:
        for body, sig in it:
            t = time.perf_counter()
            status = await conn.post(body, sig)
            phase.latencies_ms.append((time.perf_counter() - t) * 1000)
            phase.statuses[status] += 1
            phase.sent += 1

    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(c) for c in conns))
    phase.seconds, phase.cpu_s = time.perf_counter() - t0, time.process_time() - c0
    for c in conns:
        c.close()
    return phase


async def fixed_rate(url: str, requests: Sequence[Request], per_s: float, conns: int = 64) -> Phase:
    """Open loop: request i is due at t0 + i/per_s; latency counts from when it was due
    (no coordinated omission: a stalled server is charged for the queue it causes)."""
    pool = await _pool(url, conns)
    free: asyncio.Queue[_Conn] = asyncio.Queue()
    for c in pool:
        free.put_nowait(c)
    phase = Phase()

    async def one(due: float, body: bytes, sig: bytes) -> None:
        conn = await free.get()
        status = await conn.post(body, sig)
        phase.latencies_ms.append((time.perf_counter() - due) * 1000)
        phase.statuses[status] += 1
        free.put_nowait(conn)

    t0, c0 = time.perf_counter(), time.process_time()
    tasks = []
    for i, (body, sig) in enumerate(requests):
        due = t0 + i / per_s
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due, body, sig)))
        phase.sent += 1
    await asyncio.gather(*tasks)
    phase.seconds, phase.cpu_s = time.perf_counter() - t0, time.process_time() - c0
    for c in pool:
        c.close()
    return phase
