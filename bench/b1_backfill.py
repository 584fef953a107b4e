"""B1: backfill throughput, end to end from anvil into PostgreSQL, six contenders over
the same range of one chain, each into its own fresh database (the project's path
in-process and as the recovery CLI's whole process, the two ceilings, the seed's naive
path, and the project's path through Dagster's `materialize`, bench/dagster_paths.py).

Two history shapes, each on its own chain: the heavier one (`run`: quantities uniform in
1..50, ~25 ids a log, where the token rows dominate) and a typical one (`typical`:
quantities mostly 1, 2, 3, 5, 8, 13 or 50, ~12 ids a log, up to 40 logs a block, where
the per-log and per-chunk costs show), the latter against the idempotent ceiling only."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from typing import Any

from bench.common import (
    Chain,
    Timer,
    bench_chain,
    oracle_problems,
    rate,
    stored_counts,
    throwaway_db,
)
from bench.contenders import baseline, ceiling, cli_process, project
from bench.dagster_paths import materialize_range
from devtools.history import TYPICAL_QUANTITIES, realistic_history
from devtools.oracle import ChainMint


def _timed(
    name: str, fn: Any, *args: Any, oracle: list[ChainMint] | None = None, **kw: Any
) -> dict[str, Any]:
    """Time fn into a fresh database; with `oracle` (the chain's mints of the range), also
    compare its mint_events/tokens with the chain, after the timing."""
    with throwaway_db(name) as db:
        with Timer() as t:
            counts = fn(*args[:1], db, *args[1:], **kw)
        tables = ("ceil_events", "ceil_tokens") if fn is ceiling else ("mint_events", "tokens")
        stored_ev, stored_tok = stored_counts(db, *tables)
        if oracle is not None:
            counts = {**counts, "oracle_mismatches": oracle_problems(db, oracle)}
    if counts["tokens"] is None:  # counted by the database, outside the timed part
        counts["tokens"] = stored_tok
    return {
        **counts,
        "seconds": round(t.s, 3),
        "events_per_s": rate(counts["events"], t.s),
        "tokens_per_s": rate(counts["tokens"], t.s),
        "stored_events": stored_ev,
        "stored_tokens": stored_tok,
    }


def peak_rss(chain: Chain, lo: int, hi: int) -> dict[str, Any]:
    with throwaway_db("rss") as db:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.rss_probe",
                chain.anvil.url,
                db,
                chain.contract,
                str(lo),
                str(hi),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    return json.loads(out.stdout)


def typical(n_batches: int, n_blocks: int, per_block: int, active_share: float) -> dict[str, Any]:
    """The typical shape (TYPICAL_QUANTITIES, at most per_block logs a block): the project's
    path in process, the recovery CLI as a whole process (and its loop, from its own
    summary), against the idempotent ceiling, same chain, same run."""
    shape = {"per_block": per_block, "active_share": active_share}
    result: dict[str, Any] = {
        "workload": {"batches": n_batches, "blocks": n_blocks, **shape, "quantities": "typical"}
    }
    with bench_chain(n_batches, n_blocks, seed=7, quantities=TYPICAL_QUANTITIES, **shape) as chain:
        h = chain.history
        args = (chain.anvil.url, chain.contract, h.from_block, h.to_block)
        per_block_logs = Counter(m.block_number for m in h.mints)
        result["workload"] |= {
            "tokens": h.tokens_minted,
            "blocks_with_logs": len(per_block_logs),
            "max_logs_a_block": max(per_block_logs.values(), default=0),
            "reverted": len(h.reverted_tx_hashes),
            "decoys": len(h.decoy_tx_hashes),
        }
        c: dict[str, Any] = {}
        c["project"] = _timed("t_project", project, *args, oracle=h.mints)
        c["ceiling_idempotent"] = _timed("t_ceil_idem", ceiling, *args, idempotent=True)
        c["cli_process"] = _timed("t_cli", cli_process, *args, oracle=h.mints)
        for name in ("project", "cli_process"):
            row = c[name]
            if row["stored_events"] != len(h.mints) or row["stored_tokens"] != h.tokens_minted:
                raise RuntimeError(f"typical {name} missed events or tokens")
            if row["oracle_mismatches"]:
                raise RuntimeError(f"typical {name}: {row['oracle_mismatches']}")
        result["contenders"] = c
        ceil_s = c["ceiling_idempotent"]["seconds"]
        result["ratios"] = {
            "project_over_idempotent_ceiling": round(ceil_s / c["project"]["seconds"], 3),
            "cli_over_idempotent_ceiling": round(ceil_s / c["cli_process"]["seconds"], 3),
            # the CLI's loop alone: its summary's time, start-up and closing proof excluded
            "cli_loop_over_idempotent_ceiling": round(ceil_s / c["cli_process"]["loop_s"], 3),
        }
    return result


def run(
    n_batches: int,
    n_blocks: int,
    baseline_events: int,
    big_batches: int,
    typical_shape: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """n_batches logs over n_blocks; the baseline on the first baseline_events of them;
    peak RSS again after extending the chain to big_batches logs. With `typical_shape`
    (typical()'s arguments), that workload too, on its own chain, as result["typical"]."""
    result: dict[str, Any] = {"workload": {"batches": n_batches, "blocks": n_blocks}}
    with bench_chain(n_batches, n_blocks) as chain:
        h = chain.history
        lo, hi = h.from_block, h.to_block
        args = (chain.anvil.url, chain.contract, lo, hi)
        result["workload"]["tokens"] = h.tokens_minted
        c: dict[str, Any] = {}
        c["project"] = _timed("project", project, *args, oracle=h.mints)
        # The same path as an endpoint with a batch limit of 10 (RPC_BATCH_LIMIT=10) and one
        # that takes no batches (0): the completeness proof then rides on single calls.
        for name, limit in (("project_batch_limit_10", 10), ("project_no_batches", 0)):
            c[name] = _timed(name, project, *args, oracle=h.mints, batch_limit=limit)
        c["ceiling_idempotent"] = _timed("ceil_idem", ceiling, *args, idempotent=True)
        c["ceiling_raw"] = _timed("ceil_raw", ceiling, *args, idempotent=False)
        c["cli_process"] = _timed("cli", cli_process, *args, oracle=h.mints)
        sub_hi = h.mints[min(baseline_events, len(h.mints)) - 1].block_number
        c["baseline_subset"] = _timed(
            "baseline", baseline, chain.anvil.url, chain.contract, lo, sub_hi
        )
        c["baseline_subset"]["note"] = f"first {baseline_events} events only (blocks {lo}-{sub_hi})"
        for name, row in c.items():
            expected = row["events"]
            if row["stored_events"] != expected:
                raise RuntimeError(f"{name}: stored {row['stored_events']} of {expected} events")
        for name in ("project", "project_batch_limit_10", "project_no_batches", "cli_process"):
            if c[name]["events"] != len(h.mints) or c[name]["stored_tokens"] != h.tokens_minted:
                raise RuntimeError(f"{name} missed events or tokens")
            if c[name]["oracle_mismatches"]:
                raise RuntimeError(f"{name}: {c[name]['oracle_mismatches']}")
        # After the others: it completes the last partition window with empty blocks.
        c["materialize"] = materialize_range(chain, lo, hi)
        if c["materialize"]["events"] != c["project"]["events"]:
            raise RuntimeError("materialize and the bare path saw different events")
        if c["materialize"]["oracle_mismatches"]:
            raise RuntimeError(f"materialize: {c['materialize']['oracle_mismatches']}")
        result["contenders"] = c
        p = c["project"]
        result["ratios"] = {
            "project_over_baseline": round(
                p["events_per_s"] / c["baseline_subset"]["events_per_s"], 1
            ),
            "project_over_idempotent_ceiling": round(
                p["events_per_s"] / c["ceiling_idempotent"]["events_per_s"], 3
            ),
            # the recovery CLI as a whole process (start-up included), same run
            "cli_over_idempotent_ceiling": round(
                c["cli_process"]["events_per_s"] / c["ceiling_idempotent"]["events_per_s"], 3
            ),
            "batch_limit_10_over_project": round(
                c["project_batch_limit_10"]["events_per_s"] / p["events_per_s"], 3
            ),
            "no_batches_over_project": round(
                c["project_no_batches"]["events_per_s"] / p["events_per_s"], 3
            ),
            "project_over_raw_ceiling": round(
                p["events_per_s"] / c["ceiling_raw"]["events_per_s"], 3
            ),
            # time of the whole-range materialize over time of the bare path (same events)
            "materialize_over_bare": round(c["materialize"]["seconds"] / p["seconds"], 2),
        }
        memory = {f"{len(h.mints)}_events": peak_rss(chain, lo, hi)}
    if big_batches > n_batches:
        # On a chain of its own that keeps only recent state (full state for the longer
        # history would need tens of GB in anvil): the same first part, then big_batches
        # in all over twice the blocks, the second part denser.
        with bench_chain(n_batches, n_blocks, full_state=False) as long:
            more = realistic_history(
                long.anvil,
                long.contract,
                long.decoy,
                n_batches=big_batches - n_batches,
                n_blocks=n_blocks,
                seed=6,
            )
            total = len(long.history.mints) + len(more.mints)
            memory[f"{total}_events"] = peak_rss(long, long.history.from_block, more.to_block)
    result["project_peak_memory"] = memory
    if typical_shape is not None:
        result["typical"] = typical(**typical_shape)
    return result
