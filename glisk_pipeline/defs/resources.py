"""Dagster resources: thin, configurable wrappers around the core's settings, engine, store
and RPC client. They add no behaviour of their own.

Every field is optional: a field left unset falls back to the core's Settings (the
environment, `.env`, then the documented default), so validation and defaults live in ONE
place (glisk_pipeline/settings.py). definitions.py fills fields from `EnvVar`s, so the UI
shows which variable configures what without ever showing a secret's value; tests pass
plain values and need no environment.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster import ConfigurableResource, InitResourceContext
from pydantic import PrivateAttr
from sqlalchemy import Engine

from glisk_pipeline.chain.rpc import RpcClient
from glisk_pipeline.db.engine import engine_from_settings
from glisk_pipeline.db.store import MintStore
from glisk_pipeline.settings import Settings, load_settings


def _settings(**fields: Any) -> Settings:
    """Core settings with the resource's explicitly configured fields on top."""
    return load_settings(**{k: v for k, v in fields.items() if v is not None})


class DatabaseResource(ConfigurableResource):
    """The app tables (PostgreSQL in production, the embedded SQLite file by default)."""

    database_url: str | None = None
    default_author_wallet: str | None = None
    start_block: int | None = None

    _engine: Engine | None = PrivateAttr(default=None)

    def settings(self) -> Settings:
        return _settings(
            DATABASE_URL=self.database_url,
            GLISK_DEFAULT_AUTHOR_WALLET=self.default_author_wallet,
            GLISK_START_BLOCK=self.start_block,
        )

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._engine = engine_from_settings(self.settings())

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:  # used outside a run (e.g. a direct call in a script)
            self._engine = engine_from_settings(self.settings())
        return self._engine

    def store(self) -> MintStore:
        settings = self.settings()
        return MintStore(
            self.engine,
            settings.default_author_wallet,
            start_block=settings.GLISK_START_BLOCK,
            webhook_blocks_retention=settings.GLISK_WEBHOOK_BLOCKS_RETENTION,
        )


class ChainResource(ConfigurableResource):
    """eth_getLogs access to the GliskNFT contract, and the partition scheme over its blocks.

    `rpc_url` may embed a provider key: definitions.py only ever sets it from an EnvVar.
    """

    rpc_url: str | None = None
    network: str | None = None
    alchemy_api_key: str | None = None
    contract_address: str | None = None
    start_block: int | None = None
    partition_size: int | None = None
    confirmations: int | None = None
    sensor_max_partitions_per_tick: int | None = None
    partitions_per_run: int | None = None  # the sensor's range runs (the asset reads it too)

    def settings(self) -> Settings:
        """Refuses (ConfigError) the placeholders of Settings.check_placeholders: every
        user of this resource indexes."""
        settings = _settings(
            RPC_URL=self.rpc_url,
            NETWORK=self.network,
            ALCHEMY_API_KEY=self.alchemy_api_key,
            GLISK_NFT_CONTRACT_ADDRESS=self.contract_address,
            GLISK_START_BLOCK=self.start_block,
            GLISK_PARTITION_SIZE=self.partition_size,
            GLISK_CONFIRMATIONS=self.confirmations,
            GLISK_SENSOR_MAX_PARTITIONS_PER_TICK=self.sensor_max_partitions_per_tick,
            GLISK_PARTITIONS_PER_RUN=self.partitions_per_run,
        )
        settings.check_placeholders()
        return settings

    @contextmanager
    def client(self) -> Iterator[RpcClient]:
        """An RPC client whose chain id was checked against NETWORK (fails fast otherwise)."""
        settings = self.settings()
        client = RpcClient.from_settings(settings)
        try:
            client.check_chain_id(settings.expected_chain_id)
            yield client
        finally:
            client.close()
