"""The checks as an operator reads them, on a real Dagster instance, anvil and PostgreSQL:
no false alarm while a backfill's runs are still in flight, and a freshness check whose
severity follows the configured lag thresholds."""

from __future__ import annotations

import pytest
from dagster import (
    AssetCheckSeverity,
    AssetKey,
    AssetSelection,
    DagsterRunStatus,
    Definitions,
    instance_for_test,
    materialize,
)
from sqlalchemy import text

from glisk_pipeline.chain.rpc import RpcClient
from glisk_pipeline.db.store import MintStore
from glisk_pipeline.defs.backfill.assets import mint_events
from glisk_pipeline.defs.backfill.checks import (
    CHECKPOINT_FRESH,
    NO_ORPHANED_TOKENS,
    TOKEN_IDS_CONTIGUOUS,
    TOKENS_MATCH_QUANTITY,
    WINDOWS_HOLD_THEIR_LOGS,
    mint_event_checks,
)
from glisk_pipeline.sync.backfill import backfill_range
from glisk_pipeline.windows import parse_key
from tests.support.dagster_runs import ASSETS, add_all_partitions, materialize_range
from tests.support.factories import chain_of
from tests.support.pipeline_support import (  # noqa: F401
    DEFAULT_AUTHOR,
    SIZE,
    Pipeline,
    pipeline,
    pipeline_any_db,
)


def test_windows_of_runs_in_flight_are_not_missing(pipeline: Pipeline) -> None:  # noqa: F811
    p = pipeline
    with instance_for_test() as instance:
        keys = add_all_partitions(instance, p)
        # The backfill's second run (the last window) has stored its rows and is still
        # running when the first run finishes and moves the checkpoint past it.
        last = keys[-1]
        job = Definitions(assets=[mint_events], resources=p.resources())
        instance.create_run_for_job(
            job.resolve_implicit_global_asset_job_def(),
            asset_selection=frozenset({AssetKey("mint_events")}),
            tags={"dagster/partition": last},
            status=DagsterRunStatus.STARTED,
        )
        with RpcClient(p.devchain.anvil.url) as client:
            store = MintStore(p.engine, DEFAULT_AUTHOR, start_block=p.start_block)
            backfill_range(client, store, p.devchain.glisk, *parse_key(last))
        result = materialize_range(instance, p, keys[0], keys[-2])
        assert result.success
        (cover,) = [
            e
            for e in result.get_asset_check_evaluations()
            if e.check_name == "partitions_cover_checkpoint"
        ]
        assert cover.metadata["last_processed_block"].value == parse_key(last)[1]
        assert cover.metadata["in_progress"].value == 1
        assert cover.passed, cover.metadata["partitions_to_rematerialize"].text


@pytest.mark.parametrize(
    ("extra", "passed", "severity"),
    [(0, True, None), (30, False, AssetCheckSeverity.WARN), (80, False, AssetCheckSeverity.ERROR)],
)
def test_freshness_check_follows_the_thresholds(
    pipeline: Pipeline,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    extra: int,
    passed: bool,
    severity: AssetCheckSeverity | None,
) -> None:
    p = pipeline
    with instance_for_test() as instance:
        keys = add_all_partitions(instance, p)
        assert materialize_range(instance, p, keys[0], keys[-1]).success
        # thresholds above today's lag (the head is past the last complete window), then
        # the head moves `extra` blocks on
        base = p.devchain.anvil.block_number() - parse_key(keys[-1])[1]
        monkeypatch.setenv("GLISK_LAG_WARN_BLOCKS", str(base + 20))
        monkeypatch.setenv("GLISK_LAG_ERROR_BLOCKS", str(base + 50))
        p.devchain.anvil.mine_empty(extra)
        behind = base + extra
        result = materialize(
            ASSETS,
            selection=AssetSelection.checks(CHECKPOINT_FRESH.key),
            instance=instance,
            resources=p.resources(),
            raise_on_error=False,
        )
        (evaluation,) = result.get_asset_check_evaluations()
        assert evaluation.metadata["behind_final_blocks"].value == behind
        assert evaluation.passed is passed
        if severity is not None:
            assert evaluation.severity == severity
            assert f"{behind} blocks behind" in evaluation.description


def test_every_check_has_a_description() -> None:
    assert len(mint_event_checks) == 7
    for spec in mint_event_checks:
        assert spec.description and len(spec.description) > 40, spec.name


def test_a_window_whose_rows_were_deleted_is_named_by_the_checks(
    pipeline_any_db: Pipeline,  # noqa: F811
) -> None:
    """An operator deletes (or loses) one window's rows: the checks must name that window,
    and re-materializing what they list must fix it."""
    p = pipeline_any_db
    with instance_for_test() as instance:
        keys = add_all_partitions(instance, p)
        assert materialize_range(instance, p, keys[0], keys[-1]).success
        blocks = sorted({m.block_number for m in p.history.mints})
        victim = keys[len(keys) // 2]
        lo, hi = parse_key(victim)
        assert any(lo <= b <= hi for b in blocks)
        with p.engine.begin() as conn:
            between = {"lo": lo, "hi": hi}
            conn.execute(
                text(
                    "DELETE FROM tokens WHERE mint_event_id IN (SELECT id FROM mint_events "
                    "WHERE block_number BETWEEN :lo AND :hi)"
                ),
                between,
            )
            conn.execute(
                text("DELETE FROM mint_events WHERE block_number BETWEEN :lo AND :hi"), between
            )

        def evaluate() -> dict[str, object]:
            result = materialize(
                ASSETS,
                selection=AssetSelection.checks(
                    TOKEN_IDS_CONTIGUOUS.key, WINDOWS_HOLD_THEIR_LOGS.key
                ),
                instance=instance,
                resources=p.resources(),
                raise_on_error=False,
            )
            return {e.check_name: e for e in result.get_asset_check_evaluations()}

        checks = evaluate()
        # the gap's windows: from the last mint before the deleted window to the first
        # after it, both included (a missing mint may share a block with either)
        before = max(b for b in blocks if b < lo)
        after = min(b for b in blocks if b > hi)
        expected = [k for k in keys if parse_key(k)[1] >= before and parse_key(k)[0] <= after]
        assert victim in expected
        contiguous = checks["token_ids_contiguous"]
        assert not contiguous.passed
        assert contiguous.metadata["partitions_to_rematerialize"].text.split() == expected
        # the per-window check names it exactly
        per_window = checks["windows_hold_their_logs"]
        assert not per_window.passed
        assert per_window.metadata["partitions_to_rematerialize"].text.split() == [victim]

        assert materialize_range(instance, p, victim, victim).success
        assert all(e.passed for e in evaluate().values())


def test_windows_of_a_gap_span_the_events_around_it() -> None:
    from glisk_pipeline.verify.supply import IdRange, windows_of

    def key(start: int) -> str:
        return f"{start:012d}-{start + 99:012d}"

    # ids 31..39 missing between an event in block 150 and one in block 420
    gap = IdRange(31, 39, 150, 420)
    assert windows_of([gap], size=100, start_block=120) == [key(s) for s in (100, 200, 300, 400)]
    # an overlap at one block: that block's window
    assert windows_of([IdRange(40, 45, 820, 820)], size=100, start_block=120) == [key(800)]


def test_checks_after_a_backfill_that_skips_window_0_and_a_deletion_inside_it(
    pipeline: Pipeline,  # noqa: F811
) -> None:
    """Windows 1-3 backfilled, window 0 and the rest not (the checkpoint stays unset), then
    one mint deleted from window 2: every check judges what is materialized, names the
    right fix and counts only partitions that exist."""
    p = pipeline
    with instance_for_test() as instance:
        keys = add_all_partitions(instance, p)
        assert len(keys) >= 6
        done = keys[1:4]
        assert materialize_range(instance, p, done[0], done[-1]).success
        assert MintStore(p.engine, DEFAULT_AUTHOR).last_processed_block() is None
        lo, hi = parse_key(done[1])
        inside = sorted(
            (m for m in p.history.mints if lo <= m.block_number <= hi),
            key=lambda m: m.block_number,
        )
        assert len(inside) >= 3
        with p.engine.begin() as conn:
            victim = conn.execute(
                text(
                    "SELECT id, start_token_id, quantity FROM mint_events WHERE block_number "
                    "BETWEEN :lo AND :hi ORDER BY start_token_id LIMIT 1 OFFSET 1"
                ),
                {"lo": lo, "hi": hi},
            ).one()
            conn.execute(text("DELETE FROM tokens WHERE mint_event_id = :i"), {"i": victim.id})
            conn.execute(text("DELETE FROM mint_events WHERE id = :i"), {"i": victim.id})
        first, last = victim.start_token_id, victim.start_token_id + victim.quantity - 1
        ids = f"id {first}" if first == last else f"ids {first}-{last}"

        result = materialize(
            ASSETS,
            selection=AssetSelection.checks(*(spec.key for spec in mint_event_checks)),
            instance=instance,
            resources=p.resources(),
            raise_on_error=False,
        )
        checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
        meta = {name: {k: v.value for k, v in e.metadata.items()} for name, e in checks.items()}

        contiguous = checks["token_ids_contiguous"]
        assert not contiguous.passed
        assert ids in str(meta["token_ids_contiguous"]["gap_ranges"])
        assert ids in (contiguous.description or "")
        fix = str(meta["token_ids_contiguous"]["partitions_to_rematerialize"]).split()
        assert done[1] in fix and set(fix) <= set(done)
        note = str(meta["token_ids_contiguous"]["not_judged"])
        assert f"window {keys[0]} not backfilled" in note and "last_processed_block -1" in note

        supply = checks["supply_matches_contract"]
        assert not supply.passed
        backfill = str(meta["supply_matches_contract"]["partitions_to_backfill"]).split()
        assert keys[0] in backfill and not set(backfill) & set(done)
        assert meta["supply_matches_contract"]["partitions_to_backfill_count"] == len(backfill)
        assert meta["supply_matches_contract"]["partitions_named"] <= len(keys)
        assert meta["supply_matches_contract"]["partitions"] == len(keys)
        assert "Backfill" in (supply.description or "")
        for name in meta:  # no raw exception names in any check's metadata
            assert "Error" not in str(meta[name]), (name, meta[name])

        cover = checks["partitions_cover_checkpoint"]
        assert not cover.passed
        assert str(meta["partitions_cover_checkpoint"]["partitions_to_rematerialize"]).split() == [
            keys[0]
        ]
        fresh = checks["checkpoint_fresh"]
        assert not fresh.passed and meta["checkpoint_fresh"]["held_back_by"] == keys[0]
        per_window = checks["windows_hold_their_logs"]
        assert str(meta["windows_hold_their_logs"]["partitions_to_rematerialize"]).split() == [
            done[1]
        ]
        assert not per_window.passed

        # the fixes they name, done: window 0 backfilled and window 2 re-materialized
        assert materialize_range(instance, p, keys[0], keys[0]).success
        assert materialize_range(instance, p, done[1], done[1]).success
        again = materialize(
            ASSETS,
            selection=AssetSelection.checks(TOKEN_IDS_CONTIGUOUS.key, WINDOWS_HOLD_THEIR_LOGS.key),
            instance=instance,
            resources=p.resources(),
        )
        assert all(e.passed for e in again.get_asset_check_evaluations())


def test_a_token_row_orphaned_by_a_reorg_fails_its_check_naming_it(
    pipeline: Pipeline,  # noqa: F811
) -> None:
    p = pipeline
    with instance_for_test() as instance:
        keys = add_all_partitions(instance, p)
        assert materialize_range(instance, p, keys[0], keys[-1]).success
        mint = p.history.mints[0]
        revealed = mint.start_token_id
        with p.engine.begin() as conn:  # a worker revealed one of its tokens
            conn.execute(
                text("UPDATE tokens SET status = 'revealed' WHERE token_id = :t"), {"t": revealed}
            )
        # the final chain's block there turned out to be another one (the store's removal)
        block = mint.block_number
        MintStore(p.engine, DEFAULT_AUTHOR, start_block=p.start_block).reconcile_range(
            [], start_block=block, end_block=block, canonical=chain_of()
        )
        result = materialize(
            ASSETS,
            selection=AssetSelection.checks(NO_ORPHANED_TOKENS.key, TOKENS_MATCH_QUANTITY.key),
            instance=instance,
            resources=p.resources(),
            raise_on_error=False,
        )
        checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
        assert checks["tokens_match_quantity"].passed  # the rows still detected left
        orphaned = checks["no_orphaned_tokens"]
        assert not orphaned.passed and "docs/downstream.md" in orphaned.description
        assert orphaned.metadata["orphaned_tokens"].value == 1
        assert orphaned.metadata["orphaned_token_ids"].text == str(revealed)
