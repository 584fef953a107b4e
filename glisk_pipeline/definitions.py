"""The Dagster code location (workspace.yaml loads this module): composes the assets
(mint_events carries its checks), sensors (run_failure_recorder among them) and
resources; defines nothing of its own.

Resource fields come from `EnvVar`s for the variables that are set, so the UI names the
variable behind each value and never shows a secret; unset ones fall back to the core's
Settings defaults (see resources.py), which keeps `dagster dev` loadable with no config.
"""

from __future__ import annotations

import os

from dagster import Definitions, EnvVar, in_process_executor

from glisk_pipeline.defs.backfill.assets import mint_events, mint_stats
from glisk_pipeline.defs.backfill.sensors import chain_head_sensor
from glisk_pipeline.defs.resources import ChainResource, DatabaseResource
from glisk_pipeline.defs.run_record import run_failure_recorder
from glisk_pipeline.defs.silence.fill import mint_events_tip
from glisk_pipeline.defs.silence.sensor import webhook_silence_sensor


def _env(name: str) -> EnvVar | None:
    return EnvVar(name) if os.environ.get(name) else None


def _env_int(name: str) -> int | None:  # an IntEnvVar is an int to the type checker
    return EnvVar.int(name) if os.environ.get(name) else None


defs = Definitions(
    assets=[mint_events, mint_stats, mint_events_tip],
    sensors=[chain_head_sensor, webhook_silence_sensor, run_failure_recorder],
    # One process per run, not one per step: the default multiprocess executor starts a
    # Python process per asset and per check (~5 s of imports each on 2 cores, measured),
    # which dwarfed the work; a range run's steps are sequential anyway.
    executor=in_process_executor,
    resources={
        "database": DatabaseResource(
            database_url=_env("DATABASE_URL"),
            default_author_wallet=_env("GLISK_DEFAULT_AUTHOR_WALLET"),
            start_block=_env_int("GLISK_START_BLOCK"),
        ),
        "chain": ChainResource(
            rpc_url=_env("RPC_URL"),
            network=_env("NETWORK"),
            alchemy_api_key=_env("ALCHEMY_API_KEY"),
            contract_address=_env("GLISK_NFT_CONTRACT_ADDRESS"),
            start_block=_env_int("GLISK_START_BLOCK"),
            partition_size=_env_int("GLISK_PARTITION_SIZE"),
            confirmations=_env_int("GLISK_CONFIRMATIONS"),
            sensor_max_partitions_per_tick=_env_int("GLISK_SENSOR_MAX_PARTITIONS_PER_TICK"),
            partitions_per_run=_env_int("GLISK_PARTITIONS_PER_RUN"),
        ),
    },
)
