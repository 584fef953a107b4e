"""A local chain ready for the pipeline: GliskNFT and a decoy deployed on anvil, a realistic
mint history mined, the app database migrated, some authors registered, and the app settings
(NETWORK, RPC_URL, ...) that point the pipeline at it. Shared by `make demo` and `make dev`.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from devtools.anvil import DEFAULT_MINT_PRICE, Anvil, deploy
from devtools.history import History, realistic_history
from glisk_pipeline.db.engine import make_engine
from glisk_pipeline.db.migrate import upgrade
from glisk_pipeline.db.store import MintStore

# The default author wallet of every local set-up (demo, tests, benchmarks): mints by
# unregistered authors are credited to it.
DEFAULT_AUTHOR = "0x" + "de" * 20
ANVIL_FINALITY = 64  # anvil's `finalized` tag trails the head by 64 blocks


@dataclass
class DemoOptions:
    """The local chain's size and partitioning, and where the tables and Dagster's storage live."""

    batches: int = 2000
    blocks: int = 4000
    partition_size: int = 200
    partitions_per_run: int = 10
    seed: int = 7
    database_url: str | None = None  # default: a SQLite file in the temp dir
    dagster_pg_url: str | None = None  # default: Dagster's local storage in the temp dir


@contextlib.contextmanager
def temp_dir() -> Iterator[Path]:
    """One private temp dir for everything a local set-up writes; removed on exit."""
    path = Path(tempfile.mkdtemp(prefix="glisk-demo-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class LocalChain:
    contract: str
    start_block: int
    database_url: str
    history: History
    mining_s: float
    env: dict[str, str]  # the app settings for this chain (NETWORK, RPC_URL, ...)


def build_local_chain(
    anvil: Anvil,
    options: DemoOptions,
    tmp: Path,
    say: Callable[[str], None],
    on_deployed: Callable[[dict[str, str]], None] | None = None,
) -> LocalChain:
    """Deploy, mine a realistic history, migrate the app database, register authors.
    `on_deployed(env)` is called with the app settings as soon as the contract exists,
    before the (slow) mining: the demo starts `dagster dev` there."""
    contract = deploy(anvil, "GliskNFT", DEFAULT_MINT_PRICE)
    start_block = anvil.block_number()  # the deployment block
    database_url = options.database_url or f"sqlite:///{tmp / 'glisk.db'}"
    env = {
        "NETWORK": "LOCAL",
        "RPC_URL": anvil.url,
        "GLISK_NFT_CONTRACT_ADDRESS": contract,
        "GLISK_DEFAULT_AUTHOR_WALLET": DEFAULT_AUTHOR,
        "GLISK_START_BLOCK": str(start_block),
        "GLISK_PARTITION_SIZE": str(options.partition_size),
        "GLISK_PARTITIONS_PER_RUN": str(options.partitions_per_run),
        "DATABASE_URL": database_url,
    }
    if on_deployed is not None:
        on_deployed(env)
    decoy = deploy(anvil, "DecoyNFT")
    t0 = time.monotonic()
    history = realistic_history(
        anvil,
        contract,
        decoy,
        n_batches=options.batches,
        n_blocks=options.blocks,
        seed=options.seed,
    )
    # Let the last window become complete and final under anvil's `finalized` tag.
    anvil.mine_empty(options.partition_size + ANVIL_FINALITY)
    mining_s = time.monotonic() - t0
    say(
        f"chain: {len(history.mints)} mints ({history.tokens_minted} tokens) over blocks "
        f"{history.from_block}-{history.to_block}, plus decoys and reverts ({mining_s:.1f}s)"
    )
    upgrade(database_url)
    engine = make_engine(database_url)
    store = MintStore(engine, DEFAULT_AUTHOR, start_block=start_block)
    for wallet in history.registered_authors:
        store.register_author(wallet)
    engine.dispose()
    return LocalChain(contract, start_block, database_url, history, mining_s, env)
