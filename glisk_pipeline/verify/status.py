"""The index's state as the person on call needs it (`glisk status`): how far behind the
backfill checkpoint and the webhook are, in blocks and seconds, whether the webhook is
alive, what the tables hold, and whether they pass the cheap integrity checks: token-id
contiguity (SQL) and the supply proof (one eth_call, glisk_pipeline/verify/supply.py).
Read-only: a few RPC calls and a few indexed queries.

Failing (`failing`, `glisk status` exits 4): token ids overlap anywhere or have a gap at
or below the checkpoint; the supply proof finds missing or extra ids at the final block.
Orphaned token rows (downstream's rows whose mint left the chain) fail it too
(`no_orphaned_tokens`).
Unreachable (`unreachable`, exit 1): the node or the database did not answer; what the
other one says is still reported.

Lagging (`problems`, `glisk status` exits 3):
- the checkpoint more than GLISK_LAG_ERROR_BLOCKS below the final block (a warning past
  GLISK_LAG_WARN_BLOCKS);
- no webhook delivery for GLISK_WEBHOOK_SILENCE_SECONDS while the chain advanced past the
  last delivered block (Alchemy pauses an endpoint after repeated failures and does not
  replay the gap). A database that never received a delivery is reported, not judged: a
  deployment may run without the webhook.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from glisk_pipeline.chain.provider_errors import RpcError, redact
from glisk_pipeline.chain.rpc import RpcClient
from glisk_pipeline.db.engine import describe_db_error
from glisk_pipeline.db.schema import mint_events
from glisk_pipeline.db.store.downstream import orphaned_tokens, run_labels
from glisk_pipeline.listing import listed, shown
from glisk_pipeline.settings import Settings
from glisk_pipeline.sync.tip import WebhookView, read_view, silence
from glisk_pipeline.verify.supply import contiguity_breaks, prove, windows_of

NO_ORPHANED_TOKENS = "no_orphaned_tokens"  # the check's name, here and in Dagster


def read_tables(engine: Engine) -> dict[str, Any]:
    """What the tables say: checkpoint, the webhook's last delivery, rows by source."""
    view, checkpoint = read_view(engine)
    with engine.connect() as conn:
        by_source: dict[str, int] = dict(
            conn.execute(
                select(mint_events.c.source, func.count())
                .where(~mint_events.c.removed)
                .group_by(mint_events.c.source)
            ).all()
        )
        removed = conn.execute(
            select(func.count()).select_from(mint_events).where(mint_events.c.removed)
        ).scalar_one()
    return {
        "last_processed_block": checkpoint,
        "webhook": view,
        "rows": {
            "webhook": int(by_source.get("webhook", 0)),
            "backfill": int(by_source.get("backfill", 0)),
            "removed": int(removed),
        },
    }


def block_times(client: RpcClient, blocks: list[int]) -> dict[int, int]:
    """Unix time of each block, in one JSON-RPC batch."""
    wanted = sorted({b for b in blocks if b >= 0})
    answers = client.batch(
        [("eth_getBlockByNumber", [hex(b), False]) for b in wanted], what="block timestamps"
    )
    return {b: int(a["timestamp"], 16) for b, a in zip(wanted, answers, strict=True) if a}


def empty_status() -> dict[str, Any]:
    """Every key `glisk status --json` writes, whatever could be read."""
    return {
        "chain": None,
        "checkpoint": None,
        "webhook": None,
        "rows": None,
        "integrity": {"token_ids_contiguous": None, "supply": None},
        "partitions": None,
        "checks": None,
        "downstream": None,  # token rows workers moved on whose mint left the chain
        "warnings": [],
        "problems": [],
        "unreachable": [],  # endpoints (scheme://host:port) that did not answer
        "failing": [],  # integrity checks (ours and Dagster's) that fail
    }


def unreachable(status: dict[str, Any], what: str, endpoint: str, reason: str) -> None:
    status["unreachable"].append(endpoint)
    status["problems"].append(f"{what} {endpoint} unreachable: {reason}")


def collect(
    settings: Settings, engine: Engine, client: RpcClient, *, now: datetime | None = None
) -> dict[str, Any]:
    """What `glisk status` reports. A part that cannot be read (the node, the database)
    is named in `problems` and `unreachable` and the other parts are still read."""
    now = now or datetime.now(UTC)
    status = empty_status()
    tables: dict[str, Any] | None = None
    try:
        tables = read_tables(engine)
        status["rows"] = tables["rows"]
    except SQLAlchemyError as exc:
        unreachable(status, "database", redact(str(engine.url)), describe_db_error(exc))
    chain_ok = True
    try:
        head = client.block_number()
        final = client.final_block(settings.GLISK_CONFIRMATIONS)
    except RpcError as exc:
        unreachable(status, "RPC node", client.endpoint, str(exc))
        chain_ok = False
    if tables is not None:
        check_contiguity(status, engine, tables["last_processed_block"], settings)
        check_orphans(status, engine)
    if tables is None or not chain_ok:
        if tables is not None:  # what the database says without the chain
            status["checkpoint"] = {"last_processed_block": tables["last_processed_block"]}
            view: WebhookView = tables["webhook"]
            if view.last_delivery_at is not None:
                status["webhook"] = {
                    "last_block": view.last_block,
                    "last_delivery_at": view.last_delivery_at.isoformat(),
                    "last_delivery_age_seconds": _age(now, view.last_delivery_at),
                }
        return status
    lags(status, settings, client, tables, head, final, now)
    check_supply(status, settings, engine, client, final, tables["last_processed_block"])
    return status


def check_contiguity(
    status: dict[str, Any], engine: Engine, checkpoint: int | None, settings: Settings
) -> None:
    """token_ids_contiguous, evaluated here in SQL: no overlap anywhere, no gap at or
    below the checkpoint."""
    gaps, overlaps = contiguity_breaks(engine, checkpoint)
    keys = windows_of(
        gaps + overlaps,
        size=settings.GLISK_PARTITION_SIZE,
        start_block=settings.start_block,
    )
    status["integrity"]["token_ids_contiguous"] = {
        "passed": not (gaps or overlaps),
        "gaps": len(gaps),
        "overlaps": len(overlaps),
        **listed("gap_ranges", [str(g) for g in gaps]),
        **listed("overlap_ranges", [str(o) for o in overlaps]),
        **listed("partitions_to_rematerialize", keys),
    }
    if gaps or overlaps:
        status["failing"].append("token_ids_contiguous")
        status["problems"].append(
            f"token ids not contiguous: {len(gaps)} gaps ({shown(gaps)}), "
            f"{len(overlaps)} overlaps ({shown(overlaps)}); re-materialize {shown(keys)}"
        )


def check_orphans(status: dict[str, Any], engine: Engine) -> None:
    """Orphaned token rows (store/downstream.py): a worker moved them on, then a reorg
    took their mint off the chain. Failing until the operator resolves them."""
    with engine.connect() as conn:
        found = orphaned_tokens(conn)
    ids = [o.token_id for o in found]
    by_status: dict[str, int] = {}
    for orphan in found:
        by_status[orphan.status] = by_status.get(orphan.status, 0) + 1
    status["downstream"] = {
        "orphaned_tokens": len(found),
        **listed("orphaned_token_ids", ids, limit=100),
        "orphaned_by_status": by_status,
        "orphaned_moved_aside": sum(o.archived for o in found),
    }
    if found:
        runs = run_labels(ids)
        status["failing"].append(NO_ORPHANED_TOKENS)
        status["problems"].append(
            f"{len(found)} token rows downstream moved on belong to mints no longer on the "
            f"chain (orphaned): token ids {shown(runs)}; undo their work downstream, then "
            "delete them (docs/downstream.md)"
        )


def check_supply(
    status: dict[str, Any],
    settings: Settings,
    engine: Engine,
    client: RpcClient,
    final: int,
    checkpoint: int | None,
) -> None:
    """The supply proof: one eth_call at the final block (glisk_pipeline/verify/supply.py)."""
    if settings.GLISK_NFT_CONTRACT_ADDRESS is None:
        status["warnings"].append("supply proof skipped: GLISK_NFT_CONTRACT_ADDRESS not set")
        return
    try:
        proof = prove(client, engine, settings, final, checkpoint)
    except RpcError as exc:
        status["warnings"].append(f"supply proof not made: {exc}")
        return
    status["integrity"]["supply"] = proof.as_dict()
    if proof.failing:
        status["failing"].append("supply_matches_contract")
        status["problems"].append(
            f"supply proof {proof.summary()}: run `glisk repair`"
            + (f" (extra ids: re-materialize {shown(proof.partitions)})" if proof.extra else "")
        )
    elif not proof.compared or not proof.consistent:
        status["warnings"].append(
            f"supply proof {proof.summary()}"
            + ("; above the checkpoint: `glisk repair` adds them now" if proof.missing else "")
        )


def lags(
    status: dict[str, Any],
    settings: Settings,
    client: RpcClient,
    tables: dict[str, Any],
    head: int,
    final: int,
    now: datetime,
) -> None:
    checkpoint = tables["last_processed_block"]
    # no checkpoint yet: everything from GLISK_START_BLOCK is still to do
    covered = checkpoint if checkpoint is not None else settings.start_block - 1
    view: WebhookView = tables["webhook"]
    hook_block = view.last_block
    times = block_times(client, [head, covered] + ([hook_block] if hook_block is not None else []))

    def seconds_behind(block: int) -> int | None:
        if head in times and block in times:
            return times[head] - times[block]
        return None

    status["chain"] = {"head": head, "head_time": _iso(times.get(head)), "final": final}
    status["checkpoint"] = {
        "last_processed_block": checkpoint,
        "behind_final_blocks": max(0, final - covered),
        "behind_head_blocks": head - covered,
        "behind_head_seconds": seconds_behind(covered),
    }
    behind = status["checkpoint"]["behind_final_blocks"]
    if behind > settings.GLISK_LAG_ERROR_BLOCKS:
        status["problems"].append(
            f"checkpoint {behind} blocks behind the final block "
            f"(GLISK_LAG_ERROR_BLOCKS={settings.GLISK_LAG_ERROR_BLOCKS})"
        )
    elif behind > settings.GLISK_LAG_WARN_BLOCKS:
        status["warnings"].append(
            f"checkpoint {behind} blocks behind the final block "
            f"(GLISK_LAG_WARN_BLOCKS={settings.GLISK_LAG_WARN_BLOCKS})"
        )
    if view.last_delivery_at is not None:
        arrived = view.last_delivery_at
        status["webhook"] = {
            "last_block": hook_block,  # None: only deliveries without block fields came
            "last_delivery_at": arrived.isoformat(),
            "last_delivery_age_seconds": _age(now, arrived),
        }
        if hook_block is not None:
            status["webhook"]["behind_head_blocks"] = head - hook_block
            status["webhook"]["behind_head_seconds"] = seconds_behind(hook_block)
        silent = silence(view, head, now, settings.GLISK_WEBHOOK_SILENCE_SECONDS)
        if silent is not None:
            status["problems"].append(f"webhook silent: {silent}")


def _age(now: datetime, then: datetime) -> int:
    return max(0, int((now - then).total_seconds()))


def _iso(unix: int | None) -> str | None:
    return None if unix is None else datetime.fromtimestamp(unix, UTC).isoformat()
