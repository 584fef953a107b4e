"""The local dev chain: one anvil process, its JSON-RPC, the contract artifacts and deploys.

Dev-only (tests, the demo, benchmarks); nothing in glisk_pipeline imports it.

    anvil_binary() -> Path                  the npm-shipped binary (or $ANVIL_BIN)
    Anvil(gas_limit=None, extra_args=())    context manager; .url .pid .rpc() .rpc_batch() .stop()
    deploy(anvil, "GliskNFT", mint_price) / deploy(anvil, "DecoyNFT") -> lowercase address
    send_block(anvil, txs) -> tx hashes     all txs into one block (explicit nonces, batched sends)
    receipts(), fund(), call_uint(), manual_mining()

Addresses: DEV_ACCOUNTS (anvil's 10 unlocked accounts, checksummed), checksum(), random_address().
Receipts and logs are anvil's JSON-RPC dicts, with lowercase addresses. Minting and the
realistic history: devtools/history.py; reading mints back: devtools/oracle.py.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import orjson
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(__file__).resolve().parent / "contracts" / "artifacts.json"
ANVIL_RELATIVE = Path("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")

DEFAULT_MINT_PRICE = 10**15  # 0.001 ETH
BASE_BLOCK_SECONDS = 2
SEND_CHUNK = 500  # requests per JSON-RPC batch; well under anvil's 2 MB body limit

DEV_ACCOUNTS: tuple[str, ...] = tuple(
    to_checksum_address(a)
    for a in (
        "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266",
        "0x70997970c51812dc3a010c7d01b50e0d17dc79c8",
        "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc",
        "0x90f79bf6eb2c4f870365e785982e1f101e93b906",
        "0x15d34aaf54267db7d7c367839aaf71a00a2c6a65",
        "0x9965507d1a55bcc2695c58ba16fb37d819b0a4dc",
        "0x976ea74026e726554db657fa54763abd0c3a0aa9",
        "0x14dc79964da2c08b23698b3d3cc7ca32193d9955",
        "0x23618e81e3f5cdf7f54c3d65f7fbc0abf5b21e8f",
        "0xa0ee7a142d267c1f36714e4a8f75612f20a79720",
    )
)


class AnvilError(RuntimeError):
    """A JSON-RPC error answer from the dev chain (anvil); the pipeline's own is rpc.RpcError."""


def checksum(address: str) -> str:
    """EIP-55 mixed-case form (what users paste; the chain's logs are lowercase)."""
    return to_checksum_address(address)


def random_address(rng: random.Random) -> str:
    return checksum("0x" + rng.randbytes(20).hex())


def anvil_binary() -> Path:
    """The anvil binary: $ANVIL_BIN, else the one npm installs under node_modules."""
    path = Path(os.environ.get("ANVIL_BIN") or REPO_ROOT / ANVIL_RELATIVE)
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(
            f"anvil not found at {path}: run `make setup` (npm ci installs it) or set ANVIL_BIN"
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent() -> None:
    # Runs in the child before exec: the kernel kills anvil if the Python process dies, even
    # by SIGKILL, so a crashed test run leaves no node behind. PR_SET_PDEATHSIG = 1.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


class Anvil:
    """One anvil process on a free loopback port; stop() (or exit, or atexit) kills it.

    Anvil's home and cache live in a private temp dir removed on stop, so nothing grows under
    ~/.foundry. Start it from the main thread: the child dies with the thread that started it.
    """

    def __init__(
        self,
        *,
        gas_limit: int | None = None,
        extra_args: Sequence[str] = (),
        state_history: int = 100,
    ) -> None:
        self.gas_limit = gas_limit
        self.state_history = state_history
        self.extra_args = tuple(extra_args)
        self.port = 0
        self.url = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self._home: Path | None = None
        self._http: httpx.Client | None = None
        self._ids = 0
        self.manual_mining = False  # set by manual_mining() while automine is off

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("anvil is not running")
        return self.proc.pid

    def start(self, timeout: float = 15.0) -> Anvil:
        if self.proc is not None:
            return self
        self._home = Path(tempfile.mkdtemp(prefix="glisk-anvil-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [
            str(anvil_binary()),
            *("--host", "127.0.0.1", "--port", str(self.port), "--silent"),
            # Base fee 0: otherwise it rises in full blocks and queued txs are silently dropped.
            *("--block-base-fee-per-gas", "0"),
            # A bounded state history (`state_history` blocks, 100 by default): without it
            # anvil writes GBs of per-block state to disk; a bare --prune-history breaks
            # evm_revert/anvil_reorg. eth_call at an older block finds no state.
            *("--prune-history", str(self.state_history)),
            # Arrival order within a block, so batched sends mine in the order they were sent.
            *("--order", "fifo"),
        ]
        if self.gas_limit is not None:
            cmd += ["--gas-limit", str(self.gas_limit)]
        cmd += self.extra_args
        env = {
            **os.environ,
            "HOME": str(self._home),
            "XDG_CACHE_HOME": str(self._home / "cache"),
            "XDG_CONFIG_HOME": str(self._home / "config"),
            "XDG_DATA_HOME": str(self._home / "data"),
            "FOUNDRY_DIR": str(self._home / ".foundry"),
        }
        log = open(self._home / "anvil.log", "wb")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # own process group: stop() kills exactly this tree
            preexec_fn=die_with_parent,
        )
        log.close()
        atexit.register(self.stop)
        self._http = httpx.Client(timeout=120.0)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                output = (self._home / "anvil.log").read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"anvil exited at start: {output[-2000:]}")
            try:
                self.rpc("eth_chainId")
                return self
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"anvil did not answer on {self.url}") from None
                time.sleep(0.02)

    def stop(self) -> None:
        atexit.unregister(self.stop)
        if self._http is not None:
            self._http.close()
            self._http = None
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
            self.proc = None
        if self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)
            self._home = None

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _post(self, payload: Any) -> Any:
        if self._http is None:
            raise RuntimeError("anvil is not running")
        response = self._http.post(
            self.url, content=orjson.dumps(payload), headers={"content-type": "application/json"}
        )
        response.raise_for_status()
        return orjson.loads(response.content)

    def rpc(self, method: str, params: Sequence[Any] = ()) -> Any:
        self._ids += 1
        answer = self._post({"jsonrpc": "2.0", "id": self._ids, "method": method, "params": params})
        if "error" in answer:
            raise AnvilError(f"{method}: {answer['error']}")
        return answer["result"]

    def rpc_batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """One HTTP request for many calls; results in call order; raises on the first error."""
        if not calls:
            return []
        first = self._ids + 1
        self._ids += len(calls)
        payload = [
            {"jsonrpc": "2.0", "id": first + i, "method": m, "params": p}
            for i, (m, p) in enumerate(calls)
        ]
        answers = sorted(self._post(payload), key=lambda a: a["id"])
        for answer in answers:
            if "error" in answer:
                method = calls[answer["id"] - first][0]
                raise AnvilError(f"{method}: {answer['error']}")
        return [a["result"] for a in answers]

    def block_number(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)

    def mine_empty(self, count: int, interval: int = BASE_BLOCK_SECONDS) -> None:
        """Skip ahead cheaply (one RPC for any number of blocks)."""
        if count > 0:
            self.rpc("anvil_mine", [hex(count), hex(interval)])


# --- contracts ---------------------------------------------------------------------------


@cache
def artifact(name: str) -> dict[str, Any]:
    return json.loads(ARTIFACTS.read_text())[name]


@cache
def _selector(signature: str) -> str:
    return keccak(text=signature)[:4].hex()


def calldata(signature: str, types: Sequence[str], args: Sequence[Any]) -> str:
    return "0x" + _selector(signature) + abi_encode(list(types), list(args)).hex()


def deploy(anvil: Anvil, name: str, *args: Any, sender: str = DEV_ACCOUNTS[0]) -> str:
    """Deploy an artifact with constructor args; returns its lowercase address."""
    spec = artifact(name)
    ctor = next((e for e in spec["abi"] if e["type"] == "constructor"), {"inputs": []})
    data = spec["bytecode"] + abi_encode([i["type"] for i in ctor["inputs"]], list(args)).hex()
    (receipt,) = receipts(
        anvil, send_block(anvil, [{"from": sender, "data": data, "gas": "0x2dc6c0"}])
    )
    if receipt["status"] != "0x1":
        raise RuntimeError(f"deploying {name} failed: {receipt}")
    return receipt["contractAddress"].lower()


def call_uint(anvil: Anvil, contract: str, signature: str) -> int:
    """eth_call of a no-argument uint256 view, e.g. "nextTokenId()"."""
    data = "0x" + _selector(signature)
    return int(anvil.rpc("eth_call", [{"to": contract, "data": data}, "latest"]), 16)


# --- sending -----------------------------------------------------------------------------


@contextlib.contextmanager
def manual_mining(anvil: Anvil) -> Iterator[None]:
    """Automine off inside, restored after: batched sends get stuck with automine on.

    Nested uses are free (no RPC), so loops over many blocks wrap themselves once.
    """
    if anvil.manual_mining:
        yield
        return
    was_on = anvil.rpc("anvil_getAutomine")
    anvil.rpc("evm_setAutomine", [False])
    anvil.manual_mining = True
    try:
        yield
    finally:
        anvil.manual_mining = False
        if was_on:
            anvil.rpc("evm_setAutomine", [True])


def send_block(anvil: Anvil, txs: Sequence[dict[str, str]]) -> list[str]:
    """Mine `txs` (without nonces) into the next block; returns their hashes in order.

    If the block gas limit cannot take them all, the rest go into the following block(s).
    Raises if any tx was dropped instead of mined. Checks block bodies, not receipts: anvil
    builds 1,000 receipts in ~0.2 s but a block body in ~2 ms.
    """
    senders = sorted({tx["from"].lower() for tx in txs})
    counts = anvil.rpc_batch([("eth_getTransactionCount", [s, "pending"]) for s in senders])
    nonces = {s: int(c, 16) for s, c in zip(senders, counts, strict=True)}
    stamped = []
    for tx in txs:
        sender = tx["from"].lower()
        stamped.append({**tx, "nonce": hex(nonces[sender])})
        nonces[sender] += 1
    with manual_mining(anvil):
        hashes: list[str] = []
        for i in range(0, len(stamped), SEND_CHUNK):
            chunk = stamped[i : i + SEND_CHUNK]
            hashes += anvil.rpc_batch([("eth_sendTransaction", [tx]) for tx in chunk])
        pending = set(hashes)
        while pending:
            anvil.rpc("evm_mine")
            mined = anvil.rpc("eth_getBlockByNumber", ["latest", False])["transactions"]
            if not mined:
                raise RuntimeError(f"{len(pending)} of {len(hashes)} sent transactions dropped")
            pending.difference_update(mined)
    return hashes


def receipts(anvil: Anvil, tx_hashes: Sequence[str]) -> list[dict[str, Any]]:
    """Receipts in order (~0.2 ms each on anvil: fetch the few you need)."""
    calls = [("eth_getTransactionReceipt", [h]) for h in tx_hashes]
    return [
        r
        for i in range(0, len(calls), SEND_CHUNK)
        for r in anvil.rpc_batch(calls[i : i + SEND_CHUNK])
    ]


def fund(anvil: Anvil, addresses: Sequence[str], wei: int = 10**24) -> None:
    """Let arbitrary addresses send transactions (impersonated, with a balance)."""
    anvil.rpc_batch(
        [("anvil_setBalance", [a, hex(wei)]) for a in addresses]
        + [("anvil_impersonateAccount", [a]) for a in addresses]
    )
