"""`glisk status [--json]`: how far behind the index is, and whether the webhook is alive.

Exit codes (so it can serve as a cron or Kubernetes probe): 0 healthy, 1 error (the RPC
node or the database cannot be read), 3 lagging (a lag past its threshold: see
glisk_pipeline/status.py). With DAGSTER_HOME set it adds the block_ranges partitions as
that Dagster instance sees them (materialized / failed / in progress / missing).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from glisk_pipeline.cli.common import (
    EXIT_LAGGING,
    EXIT_OK,
    ArgumentParser,
    error,
    schema_problem,
)
from glisk_pipeline.db.engine import describe_db_error, engine_from_settings
from glisk_pipeline.rpc import RpcClient, RpcError
from glisk_pipeline.settings import ConfigError, load_settings


def dagster_partitions() -> dict[str, Any] | None:
    """The partitions' states from the Dagster instance, when one is configured."""
    if not os.environ.get("DAGSTER_HOME"):
        return None
    # Lazily: only this function loads Dagster (~2 s of imports), and only when asked to.
    from glisk_pipeline.defs.instance_status import partition_summary

    return partition_summary()


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="glisk status", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        client = RpcClient.from_settings(settings)
    except ConfigError as exc:
        return error(f"config error: {exc}")
    from glisk_pipeline.status import collect

    engine = engine_from_settings(settings)
    try:
        problem = schema_problem(engine)
        if problem is not None:
            return error(problem)
        client.check_chain_id(settings.expected_chain_id)
        status = collect(settings, engine, client)
        try:
            status["partitions"] = dagster_partitions()
        except Exception as exc:  # Dagster's view is optional: say why it is absent
            status["warnings"].append(f"Dagster instance not readable: {exc}".splitlines()[0])
    except RpcError as exc:
        return error(str(exc))
    except SQLAlchemyError as exc:
        return error(f"database: {describe_db_error(exc)}")
    finally:
        client.close()
        engine.dispose()
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print_text(status)
    return EXIT_LAGGING if status["problems"] else EXIT_OK


def _seconds(value: int | None) -> str:
    return "" if value is None else f", {value} s"


def print_text(s: dict[str, Any]) -> None:
    chain, cp, hook, rows = s["chain"], s["checkpoint"], s["webhook"], s["rows"]
    print(f"chain       head {chain['head']} ({chain['head_time']}), final {chain['final']}")
    seconds = _seconds(cp["behind_head_seconds"])
    print(
        f"checkpoint  last_processed_block {cp['last_processed_block']}: "
        f"{cp['behind_final_blocks']} blocks behind final, "
        f"{cp['behind_head_blocks']} blocks{seconds} behind head"
    )
    if hook is None:
        print("webhook     no delivery recorded")
    else:
        seconds = _seconds(hook["behind_head_seconds"])
        print(
            f"webhook     last block {hook['last_block']}, delivered "
            f"{hook['last_delivery_age_seconds']} s ago ({hook['last_delivery_at']}): "
            f"{hook['behind_head_blocks']} blocks{seconds} behind head"
        )
    print(
        f"rows        webhook {rows['webhook']}, backfill {rows['backfill']}, "
        f"removed {rows['removed']}"
    )
    parts = s["partitions"]
    if parts is not None:
        print(
            f"partitions  {parts['added']} added: {parts['materialized']} materialized, "
            f"{parts['failed']} failed, {parts['in_progress']} in progress, "
            f"{parts['missing']} missing"
        )
        for label in ("failed", "missing"):
            if parts[f"{label}_keys"]:
                print(f"  {label}: {', '.join(parts[f'{label}_keys'])}")
    for line in s["warnings"]:
        print(f"WARNING     {line}")
    for line in s["problems"]:
        print(f"LAGGING     {line}")
    print("status      " + ("LAGGING" if s["problems"] else "OK"))


if __name__ == "__main__":
    sys.exit(main())
