"""Pytest fixtures on a real anvil chain, loaded as a pytest plugin by tests/conftest.py.

- `anvil` (session): one node for the whole run, killed at the end.
- `deployed_chain` (session): GliskNFT (price DEFAULT_MINT_PRICE) and DecoyNFT, deployed once.
- `devchain` (function): the deployed chain at its clean state; everything the test mines is
  rolled back afterwards with evm_snapshot/evm_revert (~10 ms, even after thousands of blocks).
- `glisk_contract` (function): the GliskNFT address (lowercase) of `devchain`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from devtools.anvil import DEFAULT_MINT_PRICE, Anvil, deploy
from devtools.oracle import ChainMint, chain_mints

__all__ = ["DevChain", "anvil", "deployed_chain", "devchain", "glisk_contract"]


@dataclass(frozen=True)
class DevChain:
    anvil: Anvil
    glisk: str
    decoy: str

    def mints(self) -> list[ChainMint]:
        """Every genuine BatchMinted of the GliskNFT so far, as the oracle reads the chain."""
        return chain_mints(self.anvil, self.glisk)


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    with Anvil() as node:
        yield node


@pytest.fixture(scope="session")
def deployed_chain(anvil: Anvil) -> DevChain:
    return DevChain(anvil, deploy(anvil, "GliskNFT", DEFAULT_MINT_PRICE), deploy(anvil, "DecoyNFT"))


@pytest.fixture
def devchain(deployed_chain: DevChain) -> Iterator[DevChain]:
    # A snapshot id is single-use, so each test takes its own.
    snapshot = deployed_chain.anvil.rpc("evm_snapshot")
    yield deployed_chain
    if not deployed_chain.anvil.rpc("evm_revert", [snapshot]):
        raise RuntimeError("evm_revert failed: later tests would see this test's blocks")


@pytest.fixture
def glisk_contract(devchain: DevChain) -> str:
    return devchain.glisk
