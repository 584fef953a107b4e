"""`cli_env`: the environment of a `glisk` command run against the session's anvil and
PostgreSQL (every mined block final unless a test says otherwise)."""

from __future__ import annotations

import os

import pytest

from devtools.local_chain import DEFAULT_AUTHOR
from tests.support.fixtures_chain import DevChain

__all__ = ["cli_env"]


@pytest.fixture
def cli_env(devchain: DevChain, pg_url: str, pg_engine: object) -> dict[str, str]:
    return {
        **os.environ,
        "NETWORK": "LOCAL",
        "RPC_URL": devchain.anvil.url,
        "DATABASE_URL": pg_url,
        "GLISK_NFT_CONTRACT_ADDRESS": devchain.glisk,
        "GLISK_DEFAULT_AUTHOR_WALLET": DEFAULT_AUTHOR,
        "GLISK_START_BLOCK": "0",
        "GLISK_CONFIRMATIONS": "0",
        "PYTHONUNBUFFERED": "1",
    }
