"""Local dev chain (anvil) for tests, the demo and benchmarks. Never imported by production code.

Process
    anvil_binary() -> Path                  the npm-shipped binary (or $ANVIL_BIN)
    Anvil(gas_limit=None, extra_args=())    context manager; .url .pid .rpc() .rpc_batch() .stop()

Contracts (artifacts compiled by `make contracts`, committed)
    deploy(anvil, "GliskNFT", mint_price) -> lowercase address
    deploy(anvil, "DecoyNFT") -> lowercase address
    mint_tx / fake_mint_tx / fake_burn_tx / mint_through_tx -> transaction dicts

Sending
    send_block(anvil, txs) -> receipts      all txs into one block (explicit nonces, batched sends)
    mint_batches(anvil, contract, mints, per_block=400, empty_blocks_between=0) -> receipts
    fund(anvil, addresses, wei)             balance + impersonation for non-dev senders
    realistic_history(anvil, contract, decoy, n_batches=..., n_blocks=..., seed=...) -> History

Reading
    chain_logs(anvil, contract, from_block, to_block) -> raw eth_getLogs dicts (BatchMinted only)
    decode_mint(log) -> ChainMint

Addresses: DEV_ACCOUNTS (anvil's 10 unlocked accounts, checksummed), checksum(), random_address().
Receipts and logs are anvil's JSON-RPC dicts; they and ChainMint use lowercase addresses.
Minters/authors handed out (DEV_ACCOUNTS, History.minters/authors) are checksummed, as users
would paste them.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import orjson
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(__file__).resolve().parent / "contracts" / "artifacts.json"
ANVIL_RELATIVE = Path("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")

BATCH_MINTED_TOPIC = "0x20c0d4a5bab7118059cf1d2fd0403c4f29a05e446d435b347f90b80778374c54"
BATCH_BURNED_TOPIC = (
    "0x" + keccak(text="BatchBurned(address,address,uint256,uint256,uint256)").hex()
)
DEFAULT_MINT_PRICE = 10**15  # 0.001 ETH
BASE_BLOCK_SECONDS = 2
# Explicit gas on every tx: no per-tx eth_estimateGas, and failing mints are still mined
# (estimation would reject them) so tests see status-0 receipts. A mint uses ~29k.
MINT_GAS = 60_000
THROUGH_GAS = 90_000
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


class RpcError(RuntimeError):
    """A JSON-RPC error answer from anvil."""


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    # Runs in the child before exec: the kernel kills anvil if the Python process dies, even
    # by SIGKILL, so a crashed test run leaves no node behind. PR_SET_PDEATHSIG = 1.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


class Anvil:
    """One anvil process on a free loopback port; stop() (or exit, or atexit) kills it.

    Anvil's home and cache live in a private temp dir removed on stop, so nothing grows under
    ~/.foundry. Start it from the main thread: the child dies with the thread that started it.
    """

    def __init__(self, *, gas_limit: int | None = None, extra_args: Sequence[str] = ()) -> None:
        self.gas_limit = gas_limit
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
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [
            str(anvil_binary()),
            *("--host", "127.0.0.1", "--port", str(self.port), "--silent"),
            # Base fee 0: otherwise it rises in full blocks and queued txs are silently dropped.
            *("--block-base-fee-per-gas", "0"),
            # A bounded state history: without it anvil writes GBs of per-block state to disk;
            # a bare --prune-history breaks evm_revert/anvil_reorg.
            *("--prune-history", "100"),
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
            preexec_fn=_die_with_parent,
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
            raise RpcError(f"{method}: {answer['error']}")
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
                raise RpcError(f"{method}: {answer['error']}")
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


def _calldata(signature: str, types: Sequence[str], args: Sequence[Any]) -> str:
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


def mint_tx(contract: str, minter: str, author: str, quantity: int, value: int) -> dict[str, str]:
    data = _calldata("mint(address,uint256)", ("address", "uint256"), (author, quantity))
    return {"from": minter, "to": contract, "data": data, "value": hex(value), "gas": hex(MINT_GAS)}


def fake_mint_tx(decoy: str, sender: str, author: str, start: int, quantity: int) -> dict[str, str]:
    sig, types = "fakeMint(address,uint256,uint256)", ("address", "uint256", "uint256")
    data = _calldata(sig, types, (author, start, quantity))
    return {"from": sender, "to": decoy, "data": data, "gas": hex(MINT_GAS)}


def fake_burn_tx(decoy: str, sender: str, author: str, start: int, quantity: int) -> dict[str, str]:
    sig, types = "fakeBurn(address,uint256,uint256)", ("address", "uint256", "uint256")
    data = _calldata(sig, types, (author, start, quantity))
    return {"from": sender, "to": decoy, "data": data, "gas": hex(MINT_GAS)}


def mint_through_tx(
    decoy: str, contract: str, sender: str, author: str, quantity: int, value: int
) -> dict[str, str]:
    """A genuine mint whose minter is the decoy contract, between two decoy logs in its tx."""
    sig, types = "mintThrough(address,address,uint256)", ("address", "address", "uint256")
    data = _calldata(sig, types, (contract, author, quantity))
    return {"from": sender, "to": decoy, "data": data, "value": hex(value), "gas": hex(THROUGH_GAS)}


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


class Mint(NamedTuple):
    minter: str
    prompt_author: str
    quantity: int
    value_wei: int


def mint_batches(
    anvil: Anvil,
    contract: str,
    mints: Sequence[Mint | tuple[str, str, int, int]],
    *,
    per_block: int = 400,
    empty_blocks_between: int = 0,
) -> list[str]:
    """Send mints, `per_block` per block (optionally with empty blocks between); tx hashes in order.

    Senders must be dev accounts or fund()ed. Mints that revert are mined with status 0x0.
    """
    hashes: list[str] = []
    for i in range(0, len(mints), per_block):
        if i:
            anvil.mine_empty(empty_blocks_between)
        hashes += send_block(
            anvil, [mint_tx(contract, *Mint(*m)) for m in mints[i : i + per_block]]
        )
    return hashes


# --- reading -----------------------------------------------------------------------------


class ChainMint(NamedTuple):
    """One genuine BatchMinted as the chain says it: lowercase addresses and hashes, exact ints.

    Named apart from the pipeline's chain.MintRecord on purpose: this is the test oracle.
    """

    block_number: int
    block_hash: str
    block_timestamp: int
    tx_hash: str
    log_index: int
    minter: str
    prompt_author: str
    start_token_id: int
    quantity: int
    total_paid: int


def decode_mint(log: dict[str, Any]) -> ChainMint:
    """Independent of the pipeline's decoder on purpose: tests compare the two."""
    topics, data = log["topics"], log["data"][2:]
    return ChainMint(
        block_number=int(log["blockNumber"], 16),
        block_hash=log["blockHash"],
        block_timestamp=int(log["blockTimestamp"], 16),
        tx_hash=log["transactionHash"],
        log_index=int(log["logIndex"], 16),
        minter="0x" + topics[1][-40:],
        prompt_author="0x" + topics[2][-40:],
        start_token_id=int(topics[3], 16),
        quantity=int(data[:64], 16),
        total_paid=int(data[64:128], 16),
    )


def chain_logs(
    anvil: Anvil,
    contract: str,
    from_block: int = 0,
    to_block: int | None = None,
    topic0: str = BATCH_MINTED_TOPIC,
) -> list[dict[str, Any]]:
    """What the chain says: raw eth_getLogs dicts for `contract` and `topic0` (anvil has no
    range or result limit)."""
    query = {
        "address": contract,
        "topics": [topic0],
        "fromBlock": hex(from_block),
        "toBlock": "latest" if to_block is None else hex(to_block),
    }
    return anvil.rpc("eth_getLogs", [query])


# --- realistic history -------------------------------------------------------------------


@dataclass
class History:
    """What realistic_history() put on chain, for tests to compute the expected result."""

    contract: str
    decoy: str
    from_block: int
    to_block: int
    mints: list[ChainMint]  # every genuine BatchMinted, in chain order
    reverted_tx_hashes: list[str]
    decoy_tx_hashes: list[str]  # fake mints and burns (no genuine log)
    minters: list[str]
    authors: list[str]
    registered_authors: list[str]
    active_blocks: list[int] = field(default_factory=list)  # blocks holding transactions

    @property
    def tokens_minted(self) -> int:
        return sum(m.quantity for m in self.mints)


def _plan(
    rng: random.Random,
    n_batches: int,
    contract: str,
    decoy: str,
    price: int,
    minters: Sequence[str],
    authors: Sequence[str],
) -> list[tuple[str, dict[str, str]]]:
    """(kind, tx) in random order; kind is "mint", "revert" or "decoy"."""
    weights = [1 / (i + 1) for i in range(len(authors))]  # a few popular authors, a long tail

    def author() -> str:
        return rng.choices(authors, weights)[0]

    plan: list[tuple[str, dict[str, str]]] = []
    n_through = max(1, n_batches // 200)
    for i in range(n_batches - n_through):
        minter, quantity = rng.choice(minters), rng.randint(1, 50)
        value = price * quantity
        if rng.random() < 0.1:
            value += rng.randrange(1, price + 1)  # overpayment is kept as totalPaid
        if i == 0:
            value += 10**19  # a totalPaid above 2**63
        who = minter if i == 1 else author()  # one self-authored mint
        plan.append(("mint", mint_tx(contract, minter, who, quantity, value)))
    for _ in range(n_through):
        quantity = rng.randint(1, 50)
        tx = mint_through_tx(
            decoy, contract, rng.choice(minters), author(), quantity, price * quantity
        )
        plan.append(("mint", tx))
    failing = [(0, 0), (51, price * 51), (2, price * 2 - 1)]  # too few, too many, underpaid
    for i in range(max(len(failing), n_batches // 500)):
        quantity, value = failing[i % len(failing)]
        plan.append(("revert", mint_tx(contract, rng.choice(minters), author(), quantity, value)))
    for i in range(max(2, n_batches // 20)):
        make = fake_burn_tx if i % 3 == 2 else fake_mint_tx
        start = rng.randint(1, 25 * n_batches)  # collides with real token ids
        plan.append(
            ("decoy", make(decoy, rng.choice(minters), author(), start, rng.randint(1, 50)))
        )
    rng.shuffle(plan)
    return plan


def _layout(
    rng: random.Random, n_txs: int, n_blocks: int, per_block: int, active_share: float
) -> list[list[int]]:
    """Spread tx indexes over n_blocks block slots, at most per_block each; the rest empty."""
    active = max(math.ceil(2 * n_txs / per_block), int(n_blocks * active_share), 1)
    if active > n_blocks:
        raise ValueError(f"{n_txs} transactions need at least {active} blocks, got {n_blocks}")
    slots = sorted(rng.sample(range(n_blocks), active))
    blocks: list[list[int]] = [[] for _ in range(n_blocks)]
    for i in range(n_txs):
        slot = rng.randrange(active)
        while len(blocks[slots[slot]]) >= per_block:  # full: spill to the next active slot
            slot = (slot + 1) % active
        blocks[slots[slot]].append(i)
    return blocks


def realistic_history(
    anvil: Anvil,
    contract: str,
    decoy: str,
    *,
    n_batches: int,
    n_blocks: int,
    seed: int = 0,
    n_authors: int = 300,
    n_extra_minters: int = 20,
    per_block: int = 400,
    active_share: float = 0.25,
) -> History:
    """Mine a Base-like history of n_batches genuine mints over exactly n_blocks new blocks.

    Mixed in: decoy look-alike events, failing mints (status 0, no log), mints made through a
    contract, overpayments (one totalPaid above 2**63), empty stretches, 2 s block spacing.
    About active_share of the blocks hold transactions. Each block costs anvil ~3-4 ms, so
    n_blocks drives the time. Token ids follow the order on chain, so `mints` is read back
    from eth_getLogs and cross-checked against the transactions sent.
    """
    rng = random.Random(seed)
    extra = [random_address(rng) for _ in range(n_extra_minters)]
    fund(anvil, extra)
    minters = [*DEV_ACCOUNTS, *extra]
    authors = [random_address(rng) for _ in range(n_authors)]
    registered = rng.sample(authors, n_authors // 5)
    price = call_uint(anvil, contract, "mintPrice()")
    plan = _plan(rng, n_batches, contract, decoy, price, minters, authors)
    blocks = _layout(rng, len(plan), n_blocks, per_block, active_share)

    from_block = anvil.block_number() + 1
    to_block = from_block + n_blocks - 1
    history = History(
        contract, decoy, from_block, to_block, [], [], [], minters, authors, registered
    )
    anvil.rpc("anvil_setBlockTimestampInterval", [BASE_BLOCK_SECONDS])
    try:
        with manual_mining(anvil):
            sent = _mine_plan(anvil, plan, blocks, history.active_blocks)
    finally:
        anvil.rpc("anvil_removeBlockTimestampInterval")
    history.mints = [decode_mint(log) for log in chain_logs(anvil, contract, from_block, to_block)]
    history.reverted_tx_hashes, history.decoy_tx_hashes = sent["revert"], sent["decoy"]
    _check(anvil, history, sent["mint"])
    return history


def _mine_plan(
    anvil: Anvil,
    plan: Sequence[tuple[str, dict[str, str]]],
    blocks: Sequence[Sequence[int]],
    active_blocks: list[int],
) -> dict[str, list[str]]:
    """Mine the planned block slots in order; tx hashes by kind."""
    sent: dict[str, list[str]] = {"mint": [], "revert": [], "decoy": []}
    gap = 0
    for slot in blocks:
        if not slot:
            gap += 1  # empty blocks go in one anvil_mine call
            continue
        anvil.mine_empty(gap)
        gap = 0
        hashes = send_block(anvil, [plan[i][1] for i in slot])
        active_blocks.append(anvil.block_number())
        for i, tx_hash in zip(slot, hashes, strict=True):
            sent[plan[i][0]].append(tx_hash)
    anvil.mine_empty(gap)
    return sent


def _check(anvil: Anvil, history: History, mint_hashes: list[str]) -> None:
    """Fail loudly if the chain is not what was planned: every mint logged once, ids contiguous,
    every failing mint reverted without a log."""
    if anvil.block_number() != history.to_block:
        raise RuntimeError(f"expected head {history.to_block}, got {anvil.block_number()}")
    if sorted(m.tx_hash for m in history.mints) != sorted(mint_hashes):
        raise RuntimeError("genuine BatchMinted logs do not match the mint transactions sent")
    next_id = history.mints[0].start_token_id if history.mints else 1
    for m in history.mints:
        if m.start_token_id != next_id:
            raise RuntimeError(f"token ids not contiguous at {m}")
        next_id += m.quantity
    for r in receipts(anvil, history.reverted_tx_hashes):
        if r["status"] != "0x0" or r["logs"]:
            raise RuntimeError(f"mint {r['transactionHash']} was expected to revert")
