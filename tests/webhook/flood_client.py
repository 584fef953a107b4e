"""A hostile client, run as its own process (so its busy loop does not share the test's
GIL): it holds `--connections` connections to the sidecar from one source address, each
sending part of a request and then waiting, and reopens each one as soon as the server
closes it. It stops after --seconds, or earlier when its stdin is closed, and prints what
it saw as one JSON line.

    python -m tests.webhook.flood_client --port P --source 127.0.0.2 --connections 2000 \\
        --mode head --seconds 30

--mode head: a request head that never ends (half-sent head).
--mode body: a complete head announcing 1 MiB, then the body one byte per second.
--mode readyz: GET /readyz on each kept-alive connection, --interval seconds apart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import resource
import sys
import threading
import time
from collections import Counter

HEAD = b"POST /webhooks/alchemy HTTP/1.1\r\nhost: sidecar\r\ncontent-type: application/json\r\n"
BODY_HEAD = HEAD + b"content-length: 1048576\r\n\r\n{"


async def hold_one(
    port: int, source: str, mode: str, until: list[float], seen: Counter[str]
) -> None:
    while time.monotonic() < until[0]:
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=(source, 0)
            )
        except OSError:
            seen["connect_error"] += 1
            await asyncio.sleep(0.01)
            continue
        seen["opened"] += 1
        try:
            writer.write(HEAD + b"x-slow: " if mode == "head" else BODY_HEAD)
            reply = b""
            while time.monotonic() < until[0]:
                try:
                    chunk = await asyncio.wait_for(reader.read(65536), 1.0)
                except TimeoutError:
                    if mode == "body":
                        writer.write(b"{")  # trickle: one byte a second
                    continue
                if not chunk:
                    break
                reply += chunk
            seen[reply[:12].decode(errors="replace") or "closed_silently"] += 1
        except OSError:
            seen["reset"] += 1
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def probe_readiness(
    port: int, source: str, interval: float, until: list[float], seen: Counter[str]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    await asyncio.sleep(random.uniform(0, interval))  # spread out, not in lockstep bursts
    try:
        while time.monotonic() < until[0]:
            writer.write(b"GET /readyz HTTP/1.1\r\nhost: sidecar\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            seen[head[:12].decode()] += 1
            await asyncio.sleep(interval)
    finally:
        writer.close()


async def main(
    port: int, source: str, connections: int, mode: str, seconds: float, interval: float
) -> None:
    seen: Counter[str] = Counter()
    until = [time.monotonic() + seconds]
    loop = asyncio.get_running_loop()

    def stop_at_eof() -> None:  # a daemon thread: it must not keep the process alive
        sys.stdin.read()
        loop.call_soon_threadsafe(until.__setitem__, 0, 0.0)

    threading.Thread(target=stop_at_eof, daemon=True).start()
    if mode == "readyz":
        work = [probe_readiness(port, source, interval, until, seen) for _ in range(connections)]
    else:
        work = [hold_one(port, source, mode, until, seen) for _ in range(connections)]
    await asyncio.gather(*work)
    print(json.dumps(dict(seen)), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--mode", choices=("head", "body", "readyz"), required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--interval", type=float, default=0.0)
    args = parser.parse_args()
    # 2,000+ sockets: raise the soft descriptor limit to the hard one (often 1024 / more).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(
        main(args.port, args.source, args.connections, args.mode, args.seconds, args.interval)
    )
