"""`glisk repair [--dry-run]`: store exactly the mints the supply proof finds missing.

The supply proof (glisk_pipeline/verify/supply.py) compares the live token ids with the
contract's `nextTokenId()` at the final block; each missing id range is found with one
`eth_getLogs` by its startTokenId topic (glisk_pipeline/sync/repair.py) and stored through the
one store, add-only: nothing is removed, reconciled or checkpointed. The proof is run
again afterwards. Extra ids (rows the contract does not account for) are not touched:
re-materializing the listed partitions (or `glisk recover` over their blocks) reconciles
them.

Exit codes: 0 nothing missing, or everything missing stored and the proof consistent
after; 1 error (nothing stored; the proof could not be made); 2 partial (some of the
missing mints were not found, or extra ids remain). --dry-run writes nothing and exits 0
when nothing is missing, 4 when something is (what would be stored is printed).
"""

from __future__ import annotations

import sys

from sqlalchemy.exc import SQLAlchemyError

from glisk_pipeline.chain.decoder import DecodeError
from glisk_pipeline.chain.rpc import RpcClient, RpcError
from glisk_pipeline.cli.common import (
    EXIT_FAILING,
    EXIT_OK,
    EXIT_PARTIAL,
    ArgumentParser,
    command_settings,
    error,
    schema_problem,
)
from glisk_pipeline.db.engine import describe_db_error, engine_from_settings
from glisk_pipeline.db.store import MintStore, StoreError
from glisk_pipeline.listing import SHOWN, more, shown
from glisk_pipeline.settings import ConfigError
from glisk_pipeline.sync.repair import RepairReport, find_missing, store_found
from glisk_pipeline.verify.supply import prove


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="glisk repair", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dry-run", action="store_true", help="find the missing mints, store nothing"
    )
    args = parser.parse_args(argv)
    try:
        settings = command_settings("GLISK_NFT_CONTRACT_ADDRESS", "GLISK_DEFAULT_AUTHOR_WALLET")
        client = RpcClient.from_settings(settings)
    except ConfigError as exc:
        return error(f"config error: {exc}")
    engine = engine_from_settings(settings)
    try:
        problem = schema_problem(engine)
        if problem is not None:
            return error(problem)
        client.check_chain_id(settings.expected_chain_id)
        final = client.final_block(settings.GLISK_CONFIRMATIONS)
        store = MintStore(
            engine,
            settings.default_author_wallet,
            settings.start_block,
            webhook_blocks_retention=settings.GLISK_WEBHOOK_BLOCKS_RETENTION,
        )
        checkpoint = store.last_processed_block()
        proof = prove(client, engine, settings, final, checkpoint)
        print(f"Supply proof {proof.summary()}")
        for note in proof.notes:
            print(f"  note: {note}")
        if not proof.compared:
            return error("the supply proof could not be made: nothing to repair from")
        if not proof.missing:
            if proof.extra:
                print(_extra_advice(proof.partitions))
                return EXIT_PARTIAL
            print("Nothing to repair: every id of the contract's range is in the tables")
            return EXIT_OK
        report = find_missing(client, settings.contract_address, proof, settings.start_block)
        print_found(report)
        if args.dry_run:
            print(f"Dry run: nothing stored; `glisk repair` would store {len(report.found)} mints")
            return EXIT_FAILING
        store_found(store, report, final)
        print(
            f"Stored {report.stored} mints ({report.tokens} tokens), "
            f"{report.duplicates} already present"
        )
        after = prove(client, engine, settings, final, checkpoint)
        print(f"After: supply proof {after.summary()}")
        print(f"RPC: {client.stats.calls} HTTP requests in all ({client.stats.retries} retries)")
        if after.extra:
            print(_extra_advice(after.partitions))
        return EXIT_OK if after.consistent else EXIT_PARTIAL
    except (RpcError, StoreError, DecodeError) as exc:
        return error(str(exc))
    except SQLAlchemyError as exc:
        return error(f"database: {describe_db_error(exc)}")
    finally:
        client.close()
        engine.dispose()


def print_found(report: RepairReport) -> None:
    print(
        f"Found {len(report.found)} missing mints with {report.queries} eth_getLogs queries "
        f"by startTokenId in {report.http_requests} HTTP requests"
    )
    for mint in report.found[: 2 * SHOWN]:
        last = mint.start_token_id + mint.quantity - 1
        print(
            f"  ids {mint.start_token_id}-{last}: block {mint.block_number} "
            f"tx {mint.tx_hash} log {mint.log_index}"
        )
    if tail := more(len(report.found), 2 * SHOWN, sep=""):
        print(f"  {tail}")
    if report.scanned:
        print(
            f"The provider refused the wide range: read the blocks around "
            f"{len(report.scanned)} gaps instead ({shown(report.scanned)})"
        )
    if report.not_found:
        print(
            f"Not found ({len(report.not_found)}): no BatchMinted log starts at token "
            f"{shown(report.not_found)} on this node (lagging?); try again, or recover the "
            "listed partitions' blocks with `glisk recover`"
        )


def _extra_advice(partitions: list[str]) -> str:
    return (
        "Extra ids are not repaired here (repair only adds): re-materialize the partitions "
        f"{shown(partitions)}, or run `glisk recover` over their blocks"
    )


if __name__ == "__main__":
    sys.exit(main())
