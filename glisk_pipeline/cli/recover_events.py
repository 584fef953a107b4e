"""Recover missed BatchMinted events without the Dagster daemon.

    glisk recover --from-block N --to-block M|latest|final --batch-size K [--dry-run] [-v]
    (= python -m glisk_pipeline.cli.recover_events ...)

Runs the same loop as the `mint_events` asset (glisk_pipeline.sync.backfill): RPC client,
decoder, store. Every stored chunk moves the checkpoint (system_state.last_processed_block)
in the same transaction as its rows, so an interrupted run resumes where it stopped: run
it again without --from-block. Every eth_getLogs answer is proven complete before it is
used (the summary says how: glisk_pipeline/verify/range_proof.py), and the run ends with the
supply proof at the final block, as `glisk status` computes it. Exit codes: 0 success,
1 error (nothing stored), 2 partial (some batches stored, then an error or an interrupt),
4 stored, but the supply proof finds ids missing or extra (the summary names the
`glisk repair` to run). Usage errors exit 1 too, with one
line naming the argument. --dry-run writes nothing: it compares the chain's logs with the
tables (glisk_pipeline/verify/audit.py), reports what is missing, present or different, the
partitions and the exact `glisk recover` command to fix it, and exits 4 when anything is
missing or different (0 when the range equals the chain).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from glisk_pipeline.chain.decoder import DecodeError
from glisk_pipeline.chain.rpc import RpcClient, RpcError
from glisk_pipeline.cli.common import (
    EXIT_ERROR,
    EXIT_FAILING,
    EXIT_OK,
    EXIT_PARTIAL,
    ArgumentParser,
    block_number,
    command_settings,
    freeze_imports,
    positive_int,
    schema_problem,
)
from glisk_pipeline.db.engine import describe_db_error, engine_from_settings
from glisk_pipeline.db.store import MintStore, StoreError
from glisk_pipeline.settings import ConfigError
from glisk_pipeline.sync.backfill import ChunkReport, backfill_range
from glisk_pipeline.verify.range_proof import SupplyTiling

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from glisk_pipeline.settings import Settings
    from glisk_pipeline.verify.audit import AuditReport


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(
        prog="glisk recover",
        description="Fetch BatchMinted logs for a block range and store what is missing.",
    )
    parser.add_argument(
        "--from-block",
        type=block_number,
        help="first block (default: last_processed_block + 1 from the database)",
    )
    parser.add_argument(
        "--to-block",
        default="final",
        type=to_block_arg,
        help="last block: a number, 'final' (the final head: finalized block or head - "
        "GLISK_CONFIRMATIONS; the default) or 'latest' (the chain head). Blocks past the "
        "final head are only added to, never reconciled or checkpointed.",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="blocks per batch (default: partition size)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="write nothing: report the chain's logs missing, present or different in the tables",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print every RPC chunk")
    return parser.parse_args(argv)


def to_block_arg(value: str) -> str:
    if value in ("latest", "final") or value.isdigit():
        return value
    raise argparse.ArgumentTypeError(
        f"must be a block number (>= 0), 'latest' or 'final', not {value!r}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    freeze_imports()
    try:
        settings = command_settings("GLISK_NFT_CONTRACT_ADDRESS", "GLISK_DEFAULT_AUTHOR_WALLET")
        client = RpcClient.from_settings(settings)  # builds the URL: may raise ConfigError
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_ERROR

    engine = engine_from_settings(settings)
    chunks_stored = 0  # decides between "error" and "partial"

    def on_chunk(chunk: ChunkReport) -> None:
        nonlocal chunks_stored
        chunks_stored += 1
        if args.verbose:
            print_chunk(chunk)

    try:
        problem = schema_problem(engine)
        if problem is not None:
            print(f"error: {problem}", file=sys.stderr)
            return EXIT_ERROR
        store = MintStore(
            engine,
            settings.default_author_wallet,
            settings.start_block,
            webhook_blocks_retention=settings.GLISK_WEBHOOK_BLOCKS_RETENTION,
        )
        client.check_chain_id(settings.expected_chain_id)
        start = args.from_block
        if start is None:
            last = store.last_processed_block()
            if last is None:
                print(
                    "error: no --from-block given and no last_processed_block in the database; "
                    f"pass --from-block (the contract's deployment block, e.g. "
                    f"{settings.start_block})",
                    file=sys.stderr,
                )
                return EXIT_ERROR
            start = last + 1
        head = client.block_number()
        final = client.final_block(settings.GLISK_CONFIRMATIONS)
        named = {"latest": head, "final": final}
        end = named[args.to_block] if args.to_block in named else int(args.to_block)
        if end > head:
            print(f"error: --to-block {end} is beyond the chain head {head}", file=sys.stderr)
            return EXIT_ERROR
        if start > end and args.from_block is not None:
            print(
                f"error: --from-block {start} is past --to-block {end} ({args.to_block})",
                file=sys.stderr,
            )
            return EXIT_ERROR
        if start > end:  # resuming after the checkpoint: already caught up
            print(f"Nothing to do: from block {start} is past to block {end}")
            return EXIT_OK
        if args.dry_run:
            return dry_run(
                client, engine, settings.contract_address, start, end, args.verbose,
                partition_size=settings.GLISK_PARTITION_SIZE,
            )  # fmt: skip

        size = args.batch_size or settings.GLISK_PARTITION_SIZE
        batches = [(a, min(a + size - 1, end)) for a in range(start, end + 1, size)]
        print(f"Recovering blocks {start} - {end} in {len(batches)} batches", flush=True)
        started = time.perf_counter()
        totals = {"found": 0, "stored": 0, "duplicates": 0, "removed": 0}
        check = SupplyTiling.from_settings(client, settings)
        for i, (a, b) in enumerate(batches, 1):
            print(f"Processing blocks {a} - {b} (batch {i}/{len(batches)})", flush=True)
            report = backfill_range(
                client, store, settings.contract_address, a, b,
                final_block=final, on_chunk=on_chunk, check=check,
            )  # fmt: skip
            for key, value in (
                ("found", report.logs_found),
                ("stored", report.stored),
                ("duplicates", report.duplicates),
                ("removed", report.removed),
            ):
                totals[key] += value
            print(
                f"  found {report.logs_found}, stored {report.stored}, "
                f"duplicates {report.duplicates}, removed {report.removed}",
                flush=True,
            )
        elapsed = time.perf_counter() - started
        print(
            f"Done: {totals['found']} events found, {totals['stored']} stored, "
            f"{totals['duplicates']} already present, {totals['removed']} removed; "
            f"{client.stats.calls} RPC calls ({client.stats.retries} retries; "
            f"{client.stats.lagging} answers refused from a lagging node; "
            f"{client.stats.proofs} block hashes read as proof) in {elapsed:.2f}s",
            flush=True,
        )
        print(f"Answers proven complete: {proven_text(client)}", flush=True)
        return supply_verdict(client, engine, settings, final, store.last_processed_block())
    except KeyboardInterrupt:
        print("Interrupted: run again without --from-block to resume", file=sys.stderr)
    except (RpcError, StoreError, DecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except SQLAlchemyError as exc:
        print(f"error: database: {describe_db_error(exc)}", file=sys.stderr)
    finally:
        client.close()
        engine.dispose()
    return EXIT_PARTIAL if chunks_stored else EXIT_ERROR


def dry_run(
    client: RpcClient,
    engine: Engine,
    contract: str,
    start: int,
    end: int,
    verbose: bool,
    *,
    partition_size: int,
) -> int:
    """Compare, write nothing; print the counts, the blocks and partitions to recover and
    the command that does it. Exit 4 (EXIT_FAILING) when anything is missing or differs."""
    # Only a dry run needs these, so a recovery does not import them (~3 ms with bytecode
    # compiled, now that eth-utils is gone; tests/test_invariants.py keeps them out).
    from glisk_pipeline.listing import SHOWN, lines, shown
    from glisk_pipeline.verify.audit import audit_range
    from glisk_pipeline.windows import keys_of_blocks

    print(f"Dry run: comparing blocks {start} - {end} with the tables (nothing is written)")

    def on_chunk(part: AuditReport) -> None:
        if verbose:
            print(
                f"    chunk {part.from_block} - {part.to_block}: on chain {part.on_chain}, "
                f"present {part.present}, missing {len(part.missing)}, "
                f"differ {len(part.differs)}, not on chain {len(part.not_on_chain)}",
                flush=True,
            )

    report = audit_range(client, engine, contract, start, end, on_chunk=on_chunk)
    print(
        f"{report.on_chain} logs on chain: {report.present} present, "
        f"{len(report.missing)} missing, {len(report.differs)} differ; "
        f"{len(report.not_on_chain)} live rows not on chain"
    )
    for title, findings in (
        ("missing", report.missing),
        ("differ", report.differs),
        ("not on chain", report.not_on_chain),
    ):
        for line in lines(findings, 2 * SHOWN):
            print(f"  {title}: {line}")
    blocks = report.blocks()
    if not blocks:
        print("Nothing to recover: the tables equal the chain in this range")
        return EXIT_OK
    print(f"Blocks to recover ({len(blocks)}): {shown(blocks, 2 * SHOWN)}")
    keys = keys_of_blocks(blocks, partition_size)
    print(f"Partitions to re-materialize ({len(keys)}): {shown(keys, 2 * SHOWN)}")
    print(f"Run: glisk recover --from-block {blocks[0]} --to-block {blocks[-1]}")
    if not (report.differs or report.not_on_chain):
        print("  (or `glisk repair`: it stores only the missing mints, found by token id)")
    return EXIT_FAILING


def proven_text(client: RpcClient) -> str:
    """How the run's eth_getLogs answers were proven complete, for the summary."""
    labels = {
        "supply": "by the contract's nextTokenId() (their logs tile its id counter)",
        "header": "by the block header in the same JSON-RPC batch (no contract state)",
    }
    counts = client.stats.proven
    parts = [f"{counts[k]} {labels.get(k, k)}" for k in sorted(counts)]
    policy = client.batch_policy
    return "; ".join(parts or ["no eth_getLogs answer needed"]) + f"; {policy.describe()}"


def supply_verdict(
    client: RpcClient, engine: Engine, settings: Settings, final: int, checkpoint: int | None
) -> int:
    """The supply proof at the final block, printed; EXIT_FAILING when it fails."""
    from glisk_pipeline.listing import shown
    from glisk_pipeline.verify.supply import prove

    try:
        proof = prove(client, engine, settings, final, checkpoint)
    except RpcError as exc:
        print(f"Supply proof not made: {exc}", file=sys.stderr)
        return EXIT_OK
    print(f"Supply proof {proof.summary()}", flush=True)
    if proof.failing:
        fix = f"; extra ids: re-materialize {shown(proof.partitions)}" if proof.extra else ""
        print(f"  ids are missing or extra: run `glisk repair`{fix}", file=sys.stderr)
        return EXIT_FAILING
    if proof.missing:
        print("  ids above the checkpoint are still to come: `glisk repair` adds them now")
    return EXIT_OK


def print_chunk(chunk: ChunkReport) -> None:
    print(
        f"    chunk {chunk.from_block} - {chunk.to_block}: found {chunk.found}, "
        f"stored {chunk.stored}, duplicates {chunk.duplicates}, removed {chunk.removed}, "
        f"proof {chunk.proof}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
