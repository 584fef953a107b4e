"""`glisk status [--json | --prometheus]`: how far behind the index is, whether the webhook
is alive, and whether the tables pass the integrity checks.

It evaluates the cheap checks itself (token-id contiguity in SQL, the supply proof: one
eth_call), and with DAGSTER_HOME set adds the block_ranges partitions and the latest
result of each asset check as that Dagster instance sees them. A part that cannot be read
(node, database) is named in `problems` with its endpoint (scheme://host:port, never a
secret) and the rest is still printed; `--json` always writes its object.

Exit codes (so it can serve as a cron or Kubernetes probe), the first that applies:
1 error (the node or the database unreachable, the schema behind), 4 failing (token ids
not contiguous, the supply proof fails, token rows orphaned by a reorg, or a Dagster
check's latest result failed with ERROR severity, for the checks it does not evaluate
itself), 3 lagging (a lag past its
threshold: see glisk_pipeline/verify/status.py), 0 healthy.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from glisk_pipeline.chain.rpc import RpcClient, RpcError
from glisk_pipeline.cli.common import (
    EXIT_ERROR,
    EXIT_FAILING,
    EXIT_LAGGING,
    EXIT_OK,
    ArgumentParser,
    command_settings,
    error,
    schema_problem,
)
from glisk_pipeline.cli.status_output import print_text, prometheus_text
from glisk_pipeline.db.engine import engine_from_settings
from glisk_pipeline.settings import ConfigError, Settings

STATUS_RPC_TIMEOUT_S = 2.0


def dagster_facts() -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The partitions' states and the latest result of each asset check, from the Dagster
    instance, when one is configured."""
    if not os.environ.get("DAGSTER_HOME"):
        return None
    # Lazily: only this function loads Dagster (~2 s of imports), and only when asked to.
    from glisk_pipeline.defs.instance_status import instance_facts

    return instance_facts()


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="glisk status", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.add_argument(
        "--prometheus",
        action="store_true",
        help="Prometheus text format (for node_exporter's textfile collector)",
    )
    args = parser.parse_args(argv)
    from glisk_pipeline.verify.status import empty_status

    try:
        settings = command_settings()
        client = status_client(settings)
    except ConfigError as exc:
        if args.json:
            status = empty_status()
            status["problems"].append(f"config error: {exc}")
            print(json.dumps(status, indent=2))
        return error(f"config error: {exc}")
    engine = engine_from_settings(settings)
    try:
        status, problem = gather(settings, engine, client)
    finally:
        client.close()
        engine.dispose()
    if problem is not None:
        if args.json:
            print(json.dumps(status, indent=2))
        return error(problem)
    code = exit_code(status)
    if args.json:
        print(json.dumps(status, indent=2))
    elif args.prometheus:
        print(prometheus_text(status, code), end="")
    else:
        print_text(status, state(status))
    if status["unreachable"]:  # one line on stderr too, for a probe's log
        print(f"error: {status['problems'][0]}", file=sys.stderr)
    return code


def status_client(settings: Settings) -> RpcClient:
    """A probe answers within seconds: a short timeout and two attempts, not the
    backfill's patience (30 s x 6 attempts with backoff)."""
    return RpcClient.from_settings(
        settings,
        timeout=min(settings.RPC_TIMEOUT_SECONDS, STATUS_RPC_TIMEOUT_S),
        max_attempts=min(settings.RPC_MAX_ATTEMPTS, 2),
        backoff_base=0.2,
        backoff_cap=1.0,
    )


def gather(
    settings: Settings, engine: Engine, client: RpcClient
) -> tuple[dict[str, Any], str | None]:
    """What `glisk status` reports (the exporter serves the same), and the schema problem
    that stopped it before anything was read (None: there was none)."""
    from glisk_pipeline.verify.status import collect, empty_status

    try:
        problem = schema_problem(engine)
    except SQLAlchemyError:
        problem = None  # collect() names the unreachable database
    if problem is not None:
        status = empty_status()
        status["problems"].append(problem)
        return status, problem
    status = collect(settings, engine, client)
    check_chain(status, client, settings.expected_chain_id)
    try:
        facts = dagster_facts()
    except Exception as exc:  # Dagster's view is optional: say why it is absent
        status["warnings"].append(f"Dagster instance not readable: {exc}".splitlines()[0])
    else:
        if facts is not None:
            status["partitions"], status["checks"] = facts
            judge_checks(status)
    return status, None


def check_chain(status: dict[str, Any], client: RpcClient, expected: int | None) -> None:
    if status["chain"] is None:
        return
    try:
        client.check_chain_id(expected)
    except RpcError as exc:
        status["problems"].append(str(exc))
        status["unreachable"].append(client.endpoint)


# Checks that status evaluates itself, now: their latest Dagster result (possibly older,
# e.g. from before a repair) is shown but not judged again.
EVALUATED_HERE = {
    "token_ids_contiguous",
    "supply_matches_contract",
    "checkpoint_fresh",
    "no_orphaned_tokens",
}


def judge_checks(status: dict[str, Any]) -> None:
    """A Dagster check whose latest result failed: ERROR severity fails status, WARN warns."""
    for check in status["checks"] or []:
        if check["passed"] is not False or check["name"] in EVALUATED_HERE:
            continue
        line = f"Dagster check {check['name']} failed ({check['severity']}) at {check['at']}"
        if check["description"]:
            line += f": {check['description']}"
        if check["severity"] == "ERROR":
            status["failing"].append(check["name"])
            status["problems"].append(line)
        else:
            status["warnings"].append(line)


def exit_code(status: dict[str, Any]) -> int:
    """1 when a part could not be read, else 4 when an integrity check fails, else 3 when
    lagging, else 0."""
    if status["unreachable"]:
        return EXIT_ERROR
    if status["failing"]:
        return EXIT_FAILING
    return EXIT_LAGGING if status["problems"] else EXIT_OK


def state(status: dict[str, Any]) -> str:
    return {EXIT_ERROR: "ERROR", EXIT_FAILING: "FAILING", EXIT_LAGGING: "LAGGING"}.get(
        exit_code(status), "OK"
    )


if __name__ == "__main__":
    sys.exit(main())
