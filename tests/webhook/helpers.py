"""Test helpers for the webhook sidecar: the real service as a subprocess (stopped by its
PID), a TCP proxy in front of PostgreSQL that a test can cut, and signed deliveries."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url

# The dev chain's process helpers: a free loopback port, and die-with-parent for children.
from devtools.anvil import DEFAULT_MINT_PRICE, DEV_ACCOUNTS, die_with_parent, free_port
from devtools.history import Mint, mint_batches
from devtools.local_chain import DEFAULT_AUTHOR
from devtools.replay import chain_deliveries, signed
from tests.support.fixtures_chain import DevChain

REPO = Path(__file__).resolve().parents[2]
OLD_KEY, NEW_KEY = "whsec_old_0123456789abcdef", "whsec_new_fedcba9876543210"
DEFAULT_ARGV = [sys.executable, "-m", "webhook_service"]


class Service:
    """`python -m webhook_service` on a free port, as deployed (or `argv`, another server
    answering /healthz; "{port}" in it is replaced). stdout (the JSON log) goes to
    `log_path`; stop() kills exactly its process group."""

    def __init__(
        self, env: Mapping[str, str], workdir: Path, argv: list[str] | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"webhook-{self.port}.log"
        full_env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/tmp"),
            "WEBHOOK_HOST": "127.0.0.1",
            "WEBHOOK_PORT": str(self.port),
            "WEBHOOK_WORKERS": "1",
            **env,
        }
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [a.format(port=self.port) for a in argv or DEFAULT_ARGV],
                cwd=workdir,  # no stray .env
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        self.http = httpx.Client(base_url=self.url, timeout=10)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"webhook service exited: {self.log()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if self.http.get("/healthz").status_code == 200:
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("webhook service did not answer /healthz")
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def post(self, payload: dict[str, Any], key: str = NEW_KEY) -> httpx.Response:
        body, headers = signed(payload, key)
        return self.http.post("/webhooks/alchemy", content=body, headers=headers)

    def stop(self) -> None:
        self.http.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)


def service_env(database_url: str, contract: str, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "GLISK_NFT_CONTRACT_ADDRESS": contract,
        "GLISK_DEFAULT_AUTHOR_WALLET": DEFAULT_AUTHOR,
        "ALCHEMY_WEBHOOK_SECRET": f"{OLD_KEY}, {NEW_KEY}",
        "NETWORK": "LOCAL",
        # every rejection logged: tests look for their lines (test_logs throttles)
        "WEBHOOK_REJECTED_LOG_SECONDS": "0",
        **extra,
    }


class TcpProxy:
    """A loopback TCP forwarder: the service reaches PostgreSQL through it. down() makes
    the database unreachable (live connections cut, new ones refused); blackhole() makes
    it stall (nothing forwarded either way, nothing closed: new connections are accepted
    and hang), as a dead route or a frozen server does; up() resumes forwarding."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.enabled = True
        self.bytes_to_server = 0  # what the service sent the database, for counting queries
        self._flowing = threading.Event()
        self._flowing.set()
        self._socks: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def url_for(self, database_url: str) -> str:
        url = make_url(database_url).set(host="127.0.0.1", port=self.port)
        return url.render_as_string(hide_password=False)

    def down(self) -> None:
        self.enabled = False
        with self._lock:
            socks, self._socks = self._socks, set()
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def blackhole(self) -> None:
        self._flowing.clear()

    def up(self) -> None:
        self.enabled = True
        self._flowing.set()

    def close(self) -> None:
        self.down()
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # listener closed
            if not self.enabled:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._socks |= {client, upstream}
            for a, b, up in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(a, b, up), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, to_server: bool) -> None:
        with contextlib.suppress(OSError):
            while True:
                self._flowing.wait()  # stalled: stop reading, so the kernel holds the rest
                data = src.recv(65536)
                if not data:
                    break
                self._flowing.wait()
                dst.sendall(data)
                if to_server:
                    with self._lock:
                        self.bytes_to_server += len(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def running(env: Mapping[str, str], workdir: Path) -> Iterator[Service]:
    service = Service(env, workdir)
    try:
        yield service
    finally:
        service.stop()


def one_mint_delivery(devchain: DevChain, quantity: int = 1) -> dict[str, Any]:
    """Mint one batch on the (fresh) dev chain; its delivery, as Alchemy would send it."""
    mint = Mint(DEV_ACCOUNTS[1], DEV_ACCOUNTS[2], quantity, quantity * DEFAULT_MINT_PRICE)
    mint_batches(devchain.anvil, devchain.glisk, [mint])
    (payload,) = chain_deliveries(devchain.anvil.rpc_batch, devchain.glisk)
    return payload
