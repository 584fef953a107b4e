"""mint_events and mint_stats materialized in-process with a real Dagster instance, real
anvil and real PostgreSQL: rows equal the chain, re-runs are idempotent, reconciliation
marks webhook-only rows removed; the asset checks pass clean and fail when corrupted."""

from __future__ import annotations

from dagster import (
    AssetKey,
    AssetSelection,
    DagsterEventType,
    DagsterInstance,
    instance_for_test,
    materialize,
)
from sqlalchemy import select, text, update

from devtools.local_chain import DEFAULT_AUTHOR
from glisk_pipeline.chain.decoder import MintRecord
from glisk_pipeline.db.mint_stats import read_table
from glisk_pipeline.db.queries import token_count_mismatches
from glisk_pipeline.db.schema import mint_events as events_t
from glisk_pipeline.db.store import MintStore
from glisk_pipeline.defs.backfill.assets import mint_events, mint_stats
from glisk_pipeline.defs.backfill.checks import mint_event_checks
from glisk_pipeline.defs.instance_status import check_results
from glisk_pipeline.verify.coverage import uncovered_windows
from glisk_pipeline.verify.supply import contiguity_breaks
from glisk_pipeline.windows import PARTITIONS_NAME, new_windows, parse_key
from tests.support.dagster_runs import ASSETS, add_all_partitions, materialize_range
from tests.support.pipeline_support import SIZE, Pipeline, pipeline  # noqa: F401

CHECK_KEYS = [spec.key for spec in mint_event_checks]


def metadata(result, key: str):
    """A metadata value of a single-partition run's materialization, or a run_* figure
    (those are on the run's last window only)."""
    events = result.asset_materializations_for_node("mint_events")
    (event,) = [e for e in events if key in e.metadata] if key.startswith("run_") else events
    return event.metadata[key].value


def per_partition(result, key: str) -> dict[str, object]:
    """{partition key: that partition's metadata value, None if it has none} of a run's
    materializations."""
    return {
        event.partition: event.metadata[key].value if key in event.metadata else None
        for event in result.asset_materializations_for_node("mint_events")
    }


def test_one_partition_then_a_range_equal_the_chain(pipeline: Pipeline) -> None:  # noqa: F811
    p = pipeline
    with instance_for_test() as instance:
        keys = add_all_partitions(instance, p)
        assert len(keys) >= 6
        one = materialize(ASSETS, instance=instance, resources=p.resources(), partition_key=keys[2])
        assert one.success
        lo, hi = parse_key(keys[2])
        assert p.mismatches(lo, hi) == []
        assert metadata(one, "logs_found") > 0
        assert metadata(one, "block_range") == f"{lo}-{hi}"

        # The first window starts before the contract: the fetch is clamped to start_block.
        ranged = materialize_range(instance, p, keys[0], keys[-1])
        assert ranged.success
        assert per_partition(ranged, "first_block")[keys[0]] == p.start_block
        assert metadata(ranged, "run_partitions") == len(keys)
        assert len(ranged.asset_materializations_for_node("mint_events")) == len(keys)
        assert p.mismatches(p.start_block, parse_key(keys[-1])[1]) == []
        assert all(c.passed for c in ranged.get_asset_check_evaluations())
        # Each partition carries its own window's figures, the run's are run_*.
        ranges = per_partition(ranged, "block_range")
        assert ranges == {
            k: f"{max(parse_key(k)[0], p.start_block)}-{parse_key(k)[1]}" for k in keys
        }
        found = per_partition(ranged, "logs_found")
        for key in keys:
            lo, hi = parse_key(key)
            assert found[key] == sum(1 for m in p.history.mints if lo <= m.block_number <= hi)
        assert sum(found.values()) == len(p.history.mints) == metadata(ranged, "run_logs_found")
        # RPC calls are each window's own: they sum to the run's, counted once
        calls = per_partition(ranged, "rpc_calls")
        assert all(n >= 1 for n in calls.values())
        assert sum(calls.values()) == metadata(ranged, "run_rpc_calls")
        # the run's figures once, on its last window; each window's row count is its own
        # rows (they sum to the table's, which every window carries as table_rows)
        with_run = [k for k, v in per_partition(ranged, "run_block_range").items() if v]
        assert with_run == [keys[-1]]
        live = len(p.history.mints)
        assert per_partition(ranged, "dagster/row_count") == found
        assert set(per_partition(ranged, "table_rows").values()) == {live}
        # the one-partition run before stored that window: the range run found it present
        assert per_partition(ranged, "stored")[keys[2]] == 0 < found[keys[2]]
        assert per_partition(ranged, "duplicates")[keys[2]] == found[keys[2]]

        # Re-materialising changes nothing.
        again = materialize_range(instance, p, keys[0], keys[-1])
        assert set(per_partition(again, "stored").values()) == {0}
        assert per_partition(again, "duplicates") == found
        assert p.mismatches(p.start_block, parse_key(keys[-1])[1]) == []
        materialized = instance.get_materialized_partitions(AssetKey("mint_events"))
        assert materialized == set(keys)


def test_a_runs_materializations_are_stored_in_block_order_then_its_checks(
    pipeline: Pipeline,  # noqa: F811
) -> None:
    """A range run stores one materialization per window in ascending block order (so the
    asset's latest is the last window, the only one with run_*), then evaluates every
    check in the same run, which sees those materializations; the checks also run alone."""
    p = pipeline
    with instance_for_test() as instance:
        keys = add_all_partitions(instance, p)
        assert len(keys) >= 6 and keys == sorted(keys)  # zero-padded: string order = blocks
        result = materialize_range(instance, p, keys[0], keys[-1])
        assert result.success
        stored = instance.get_records_for_run(
            result.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
        ).records  # in storage order
        events = [r.event_log_entry.asset_materialization for r in stored]
        assert [e.partition for e in events if e] == keys
        assert [e.metadata["first_block"].value for e in events if e] == [
            max(parse_key(k)[0], p.start_block) for k in keys
        ]
        assert [any(n.startswith("run_") for n in e.metadata) for e in events if e] == [False] * (
            len(keys) - 1
        ) + [True]
        assert all("dagster/row_count" in e.metadata for e in events if e)
        latest = instance.get_latest_materialization_event(AssetKey("mint_events"))
        assert latest and latest.asset_materialization
        assert latest.asset_materialization.partition == keys[-1]

        # The checks: in the same run, after the materializations, and they saw them (a
        # fresh instance: every window compared was materialized by this run).
        checks = instance.get_records_for_run(
            result.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
        evaluations = {
            r.event_log_entry.dagster_event.event_specific_data.check_name: (
                r.storage_id,
                r.event_log_entry.dagster_event.event_specific_data,
            )
            for r in checks
        }
        assert sorted(evaluations) == sorted(k.name for k in CHECK_KEYS)
        assert all(e.passed for _, e in evaluations.values())
        assert min(i for i, _ in evaluations.values()) > stored[-1].storage_id
        _, windows = evaluations["windows_hold_their_logs"]
        assert windows.metadata["windows_compared"].value == len(keys)
        _, cover = evaluations["partitions_cover_checkpoint"]
        assert cover.metadata["materialized"].value == len(keys)

        # Checks alone (the UI's "Execute checks"): no materialization, every check stored,
        # and what `glisk status` reads is that run's results.
        alone = materialize(
            ASSETS,
            selection=AssetSelection.checks(*CHECK_KEYS),
            instance=instance,
            resources=p.resources(),
        )
        assert alone.success
        assert alone.asset_materializations_for_node("mint_events") == []
        assert {e.check_name for e in alone.get_asset_check_evaluations()} == {
            k.name for k in CHECK_KEYS
        }
        latest_checks = check_results(instance)
        assert {c["name"]: (c["run_id"], c["passed"]) for c in latest_checks} == {
            k.name: (alone.run_id, True) for k in CHECK_KEYS
        }


ASSET_TABLES = """
{ assetNodes(assetKeys: [{path: ["mint_events"]}, {path: ["mint_stats"]},
                         {path: ["mint_events_tip"]}]) {
    assetKey { path }
    pools
    metadataEntries {
      label
      ... on TextMetadataEntry { text }
      ... on TableSchemaMetadataEntry { schema { columns { name type } } }
    } } }"""


def test_the_catalog_shows_each_assets_table_columns_and_pool() -> None:
    """What the UI's catalog reads (GraphQL, the code location loaded as dagster dev does):
    the table name and column schema, before anything was materialized; and the assets that
    call the provider (the backfill and the silence fill) share the rpc pool."""
    from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

    from devtools.anvil import REPO_ROOT
    from glisk_pipeline.db.schema import mint_events as events_table
    from glisk_pipeline.db.schema import mint_stats as stats_table

    tables = {"mint_events": events_table, "mint_stats": stats_table}
    with (
        instance_for_test() as instance,
        define_out_of_process_context(str(REPO_ROOT / "workspace.yaml"), None, instance) as ctx,
    ):
        nodes = execute_dagster_graphql(ctx, ASSET_TABLES).data["assetNodes"]
    pools = {n["assetKey"]["path"][0]: n["pools"] for n in nodes}
    assert pools == {"mint_events": ["rpc"], "mint_stats": [], "mint_events_tip": ["rpc"]}
    for node in nodes:
        if node["assetKey"]["path"][0] not in tables:
            continue
        table = tables[node["assetKey"]["path"][0]]
        entries = {e["label"]: e for e in node["metadataEntries"]}
        assert entries["dagster/table_name"]["text"] == table.name
        columns = entries["dagster/column_schema"]["schema"]["columns"]
        assert [c["name"] for c in columns] == [c.name for c in table.columns]
        if table is events_table:
            assert {"name": "total_paid", "type": "NUMERIC(78, 0)"} in columns


def test_reconciliation_marks_a_webhook_only_row_removed(pipeline: Pipeline) -> None:  # noqa: F811
    p = pipeline
    store = MintStore(p.engine, DEFAULT_AUTHOR, start_block=p.start_block)
    real = p.history.mints[0]
    ghost = MintRecord(  # a log the webhook saw on a block that lost the reorg
        tx_hash="0x" + "ab" * 32,
        log_index=0,
        block_number=real.block_number,
        block_hash="0x" + "cd" * 32,
        block_timestamp=real.block_timestamp,
        contract_address=p.devchain.glisk,
        minter=real.minter,
        author_wallet=real.prompt_author,
        start_token_id=10**9,
        quantity=3,
        total_paid=1,
    )
    store.store([ghost], source="webhook")
    with instance_for_test() as instance:
        keys = add_all_partitions(instance, p)
        key = next(k for k in keys if parse_key(k)[0] <= real.block_number <= parse_key(k)[1])
        result = materialize(ASSETS, instance=instance, resources=p.resources(), partition_key=key)
        assert metadata(result, "removed") == 1
    with p.engine.connect() as conn:
        removed = conn.execute(
            select(events_t.c.removed).where(events_t.c.tx_hash == ghost.tx_hash)
        ).scalar_one()
    assert removed is True
    lo, hi = parse_key(key)
    assert p.mismatches(lo, hi) == []


def run_partition(instance: DagsterInstance, p: Pipeline, key: str):
    """mint_events alone for one partition; its failure is returned, not raised."""
    return materialize(
        [mint_events],
        instance=instance,
        resources=p.resources(),
        partition_key=key,
        raise_on_error=False,
    )


def test_partition_not_final_yet_fails(pipeline: Pipeline) -> None:  # noqa: F811
    p = pipeline
    with instance_for_test() as instance:
        head = p.devchain.anvil.block_number()
        key = f"{head - head % SIZE:012d}-{head - head % SIZE + SIZE - 1:012d}"
        instance.add_dynamic_partitions(PARTITIONS_NAME, [key])
        result = run_partition(instance, p, key)
        assert not result.success
        # the hand-added key is removed, with the reason in the failure
        assert key not in instance.get_dynamic_partitions(PARTITIONS_NAME)
        (failure,) = [e for e in result.all_events if e.is_step_failure]
        message = failure.step_failure_data.error.message
        assert f"{key}: not final yet" in message and "removed" in message


def test_misaligned_hand_added_key_is_removed(pipeline: Pipeline) -> None:  # noqa: F811
    p = pipeline
    with instance_for_test() as instance:
        first = p.start_block - p.start_block % SIZE + 7  # 7 blocks off the grid
        key = f"{first:012d}-{first + SIZE - 1:012d}"
        instance.add_dynamic_partitions(PARTITIONS_NAME, [key])
        result = run_partition(instance, p, key)
        assert not result.success
        assert instance.get_dynamic_partitions(PARTITIONS_NAME) == []
        assert p.mismatches(p.start_block, p.devchain.anvil.block_number()) != []  # untouched


def test_checks_fail_on_a_corrupted_index(pipeline: Pipeline) -> None:  # noqa: F811
    p = pipeline
    with instance_for_test() as instance:
        keys = add_all_partitions(instance, p)
        assert materialize_range(instance, p, keys[0], keys[-1]).success
        assert token_count_mismatches(p.engine) == []
        checkpoint = parse_key(keys[-1])[1]
        assert contiguity_breaks(p.engine, checkpoint) == ([], [])

        with p.engine.begin() as conn:
            victim = conn.execute(text("SELECT min(token_id) FROM tokens")).scalar_one()
            conn.execute(text("DELETE FROM tokens WHERE token_id = :t"), {"t": victim})
            # Shift one event's ids onto its neighbour's: an overlap and a gap.
            third = conn.execute(
                select(events_t.c.id).order_by(events_t.c.start_token_id).offset(2).limit(1)
            ).scalar_one()
            conn.execute(
                update(events_t)
                .where(events_t.c.id == third)
                .values(start_token_id=events_t.c.start_token_id - 1)
            )
            conn.execute(
                text("UPDATE system_state SET value = :v WHERE key = 'last_processed_block'"),
                {"v": str(checkpoint + 5 * SIZE)},
            )
        assert len(token_count_mismatches(p.engine)) == 1
        gaps, overlaps = contiguity_breaks(p.engine, checkpoint)
        assert len(gaps) == len(overlaps) == 1
        with p.engine.begin() as conn:  # the first event gone: ids 1.. missing at the start
            first = conn.execute(
                select(events_t.c.id).order_by(events_t.c.start_token_id).limit(1)
            ).scalar_one()
            conn.execute(update(events_t).where(events_t.c.id == first).values(removed=True))
        # the table against itself cannot see ids missing before its first row: the
        # supply proof below does (missing_ranges "ids 1-...")

        # The same through Dagster: every check fails.
        result = materialize(
            ASSETS,
            selection=AssetSelection.checks(*CHECK_KEYS),
            instance=instance,
            resources=p.resources(),
        )
        evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
        assert {name: e.passed for name, e in evaluations.items()} == {
            "tokens_match_quantity": False,
            "token_ids_contiguous": False,
            # the first event was marked removed: its window holds one live row less
            "windows_hold_their_logs": False,
            "partitions_cover_checkpoint": False,
            "checkpoint_fresh": True,  # the checkpoint was moved past the head
            "supply_matches_contract": False,  # the first event's ids missing, ids held twice
            # its rows are still detected: no work downstream was orphaned
            "no_orphaned_tokens": True,
        }
        supply = evaluations["supply_matches_contract"]
        assert supply.metadata["missing_ranges"].text.startswith("ids 1-")
        assert supply.metadata["extra_ids"].value == 1 and "glisk repair" in supply.description
        # each failing check says what to do and names the partitions to re-materialize
        for name in ("tokens_match_quantity", "token_ids_contiguous", "windows_hold_their_logs"):
            assert "re-materialize" in evaluations[name].description
            listed = evaluations[name].metadata["partitions_to_rematerialize"].text
            assert listed and all(k in keys for k in listed.split())
        assert (
            evaluations["partitions_cover_checkpoint"]
            .metadata["partitions_to_rematerialize"]
            .text.split()[0]
            == new_windows(
                start_block=parse_key(keys[-1])[1] + 1,
                size=SIZE,
                final_block=checkpoint + SIZE,
                after_block=None,
                limit=1,
            )[0]
        )


def test_uncovered_windows() -> None:
    done = ["000000000100-000000000199", "000000000300-000000000399"]
    assert uncovered_windows(done, start_block=150, size=100, checkpoint=None) == []
    assert uncovered_windows(done, start_block=150, size=100, checkpoint=399) == [
        "000000000200-000000000299"
    ]
    assert uncovered_windows(done, start_block=150, size=100, checkpoint=398) == [
        "000000000200-000000000299"
    ]


def test_mint_stats_exact_wei(pipeline: Pipeline) -> None:  # noqa: F811
    p = pipeline
    with instance_for_test() as instance:
        keys = add_all_partitions(instance, p)
        assert materialize_range(instance, p, keys[0], keys[-1]).success
        result = materialize(
            [mint_events, mint_stats],
            selection=[mint_stats],
            instance=instance,
            resources=p.resources(),
        )
        assert result.success
    stats = read_table(p.engine)
    mints = p.history.mints
    assert int(stats["events"].sum()) == len(mints)
    assert int(stats["tokens"].sum()) == p.history.tokens_minted
    total = sum(stats["total_paid"], 0)
    assert total == sum(m.total_paid for m in mints)
    assert max(stats["total_paid"]) > 2**63  # the history's big payment survived exactly
    by_author: dict[str, int] = {}
    for m in mints:
        by_author[m.prompt_author] = by_author.get(m.prompt_author, 0) + m.quantity
    assert stats.groupby("author_wallet")["tokens"].sum().to_dict() == by_author
