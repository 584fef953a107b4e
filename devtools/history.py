"""Mint transactions and a realistic Base-like mint history on the dev chain.

    mint_tx / fake_mint_tx / fake_burn_tx / mint_through_tx -> transaction dicts
    mint_batches(anvil, contract, mints, per_block=400, empty_blocks_between=0) -> tx hashes
    realistic_history(anvil, contract, decoy, n_batches=..., n_blocks=..., seed=...) -> History

Minters/authors handed out (History.minters/authors) are checksummed, as users would paste
them; History.mints is read back from the chain with the oracle's independent decoder.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from devtools.anvil import (
    BASE_BLOCK_SECONDS,
    DEV_ACCOUNTS,
    Anvil,
    call_uint,
    calldata,
    fund,
    manual_mining,
    random_address,
    receipts,
    send_block,
)
from devtools.oracle import ChainMint, chain_mints

# Explicit gas on every tx: no per-tx eth_estimateGas, and failing mints are still mined
# (estimation would reject them) so tests see status-0 receipts. A mint uses ~29k.
MINT_GAS = 60_000
THROUGH_GAS = 90_000


def mint_tx(contract: str, minter: str, author: str, quantity: int, value: int) -> dict[str, str]:
    data = calldata("mint(address,uint256)", ("address", "uint256"), (author, quantity))
    return {"from": minter, "to": contract, "data": data, "value": hex(value), "gas": hex(MINT_GAS)}


def fake_mint_tx(decoy: str, sender: str, author: str, start: int, quantity: int) -> dict[str, str]:
    sig, types = "fakeMint(address,uint256,uint256)", ("address", "uint256", "uint256")
    data = calldata(sig, types, (author, start, quantity))
    return {"from": sender, "to": decoy, "data": data, "gas": hex(MINT_GAS)}


def fake_burn_tx(decoy: str, sender: str, author: str, start: int, quantity: int) -> dict[str, str]:
    sig, types = "fakeBurn(address,uint256,uint256)", ("address", "uint256", "uint256")
    data = calldata(sig, types, (author, start, quantity))
    return {"from": sender, "to": decoy, "data": data, "gas": hex(MINT_GAS)}


def mint_through_tx(
    decoy: str, contract: str, sender: str, author: str, quantity: int, value: int
) -> dict[str, str]:
    """A genuine mint whose minter is the decoy contract, between two decoy logs in its tx."""
    sig, types = "mintThrough(address,address,uint256)", ("address", "address", "uint256")
    data = calldata(sig, types, (contract, author, quantity))
    return {"from": sender, "to": decoy, "data": data, "value": hex(value), "gas": hex(THROUGH_GAS)}


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


# The shape of a typical Glisk history: mostly a few round batch sizes, about 12 ids a log.
TYPICAL_QUANTITIES: Sequence[tuple[int, float]] = (
    (1, 0.19), (2, 0.17), (3, 0.14), (5, 0.13), (8, 0.10), (13, 0.10), (50, 0.17),
)  # fmt: skip


def _plan(
    rng: random.Random,
    n_batches: int,
    contract: str,
    decoy: str,
    price: int,
    minters: Sequence[str],
    authors: Sequence[str],
    quantities: Sequence[tuple[int, float]] | None = None,
) -> list[tuple[str, dict[str, str]]]:
    """(kind, tx) in random order; kind is "mint", "revert" or "decoy". A genuine mint's
    quantity is drawn from `quantities` ((quantity, weight) pairs), or uniformly from
    1..50 (GliskNFT's cap) without them."""
    weights = [1 / (i + 1) for i in range(len(authors))]  # a few popular authors, a long tail

    def author() -> str:
        return rng.choices(authors, weights)[0]

    def draw_quantity() -> int:
        if quantities is None:
            return rng.randint(1, 50)
        return rng.choices([q for q, _ in quantities], [w for _, w in quantities])[0]

    plan: list[tuple[str, dict[str, str]]] = []
    n_through = max(1, n_batches // 200)
    for i in range(n_batches - n_through):
        minter = rng.choice(minters)
        value = price * (quantity := draw_quantity())
        if rng.random() < 0.1:
            value += rng.randrange(1, price + 1)  # overpayment is kept as totalPaid
        if i == 0:
            value += 10**19  # a totalPaid above 2**63
        who = minter if i == 1 else author()  # one self-authored mint
        plan.append(("mint", mint_tx(contract, minter, who, quantity, value)))
    for _ in range(n_through):
        quantity = draw_quantity()
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
    quantities: Sequence[tuple[int, float]] | None = None,
) -> History:
    """Mine a Base-like history of n_batches genuine mints over exactly n_blocks new blocks.

    Mixed in: decoy look-alike events, failing mints (status 0, no log), mints made through a
    contract, overpayments (one totalPaid above 2**63), empty stretches, 2 s block spacing.
    About active_share of the blocks hold transactions, at most per_block each; quantities
    ((quantity, weight) pairs, e.g. TYPICAL_QUANTITIES) shape the mints' sizes, uniform
    1..50 without them. Each block costs anvil ~3-4 ms, so
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
    plan = _plan(rng, n_batches, contract, decoy, price, minters, authors, quantities)
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
    history.mints = chain_mints(anvil, contract, from_block, to_block)
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
