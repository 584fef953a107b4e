"""Shared set-up for the Dagster pipeline tests: a small realistic history on the session
anvil, resources pointing at it, and the chain-vs-tables comparison."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy import Engine

from devtools.history import History, realistic_history
from devtools.local_chain import DEFAULT_AUTHOR
from devtools.oracle import chain_mints, compare_with_chain
from glisk_pipeline.defs.resources import ChainResource, DatabaseResource
from tests.support.fixtures_chain import DevChain

SIZE = 100  # blocks per partition: small, so a short chain has many partitions


@dataclass
class Pipeline:
    devchain: DevChain
    history: History
    start_block: int
    database_url: str
    engine: Engine

    def sensor_resources(self, **chain_overrides: object) -> dict[str, object]:
        resources = self.resources(**chain_overrides)
        return {"chain": resources["chain"], "database": resources["database"]}

    def resources(self, **chain_overrides: object) -> dict[str, object]:
        return local_resources(
            self.devchain, self.database_url, self.start_block, SIZE, **chain_overrides
        )

    def mismatches(self, from_block: int, to_block: int) -> list[str]:
        """The oracle's mismatches over mint_events/tokens of a block range (mint_stats is not
        built in these tests)."""
        mints = chain_mints(self.devchain.anvil, self.devchain.glisk, from_block, to_block)
        return compare_with_chain(self.engine, mints, with_stats=False)


def local_resources(
    devchain: DevChain, database_url: str, start_block: int, size: int, **chain_overrides: object
) -> dict[str, object]:
    """The asset's resources on the session's anvil (every block final) and a database."""
    chain = {
        "rpc_url": devchain.anvil.url,
        "network": "LOCAL",
        "contract_address": devchain.glisk,
        "start_block": start_block,
        "partition_size": size,
        "confirmations": 0,
        **chain_overrides,
    }
    return {
        "chain": ChainResource(**chain),
        "database": DatabaseResource(
            database_url=database_url,
            default_author_wallet=DEFAULT_AUTHOR,
            start_block=start_block,
        ),
    }


def _with_history(devchain: DevChain, database_url: str, engine: Engine) -> Pipeline:
    start = devchain.anvil.block_number() + 1  # the history's first block, mid-window
    history = realistic_history(
        devchain.anvil, devchain.glisk, devchain.decoy, n_batches=150, n_blocks=650, seed=3
    )
    devchain.anvil.mine_empty(SIZE)  # the history's last window becomes complete
    return Pipeline(devchain, history, start, database_url, engine)


@pytest.fixture
def pipeline(devchain: DevChain, pg_engine: Engine, pg_url: str) -> Pipeline:
    return _with_history(devchain, pg_url, pg_engine)


@pytest.fixture(params=["postgresql", "sqlite"])
def pipeline_any_db(request: pytest.FixtureRequest, devchain: DevChain) -> Pipeline:
    """The same, on either dialect of the app tables (the embedded default is SQLite)."""
    if request.param == "postgresql":
        url, engine = request.getfixturevalue("pg_url"), request.getfixturevalue("pg_engine")
    else:
        url, engine = (
            request.getfixturevalue("sqlite_url"),
            request.getfixturevalue("sqlite_engine"),
        )
    return _with_history(devchain, url, engine)
