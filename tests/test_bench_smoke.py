"""The benchmarks at tiny sizes, so they cannot rot: every contender runs end to end and
the exactly-once checks inside them hold. No timing is asserted (ratios are for
`make bench` on a quiet machine, not for a shared CI box)."""

from __future__ import annotations

from bench import cli_startup
from bench.run import main


def test_bench_smoke_runs_all_three_and_checks_exactly_once() -> None:
    results = main(["--smoke"])
    b1 = results["b1"]["contenders"]
    assert b1["project"]["events"] == b1["project"]["stored_events"] > 0
    assert b1["ceiling_idempotent"]["events"] == b1["project"]["events"]
    assert b1["baseline_subset"]["stored_events"] == b1["baseline_subset"]["events"] > 0
    assert b1["materialize"]["events"] == b1["materialize"]["stored_events"]
    assert b1["materialize"]["stored_events"] == b1["project"]["events"]
    assert b1["project"]["oracle_mismatches"] == b1["materialize"]["oracle_mismatches"] == []
    assert results["b1"]["ratios"]["materialize_over_bare"] > 0
    typical = results["b1"]["typical"]  # the typical shape: its own chain, its contenders
    for name in ("project", "cli_process"):
        row = typical["contenders"][name]
        assert row["stored_events"] == row["events"] > 0, name
        assert row["stored_tokens"] == typical["workload"]["tokens"], name
        assert row["oracle_mismatches"] == [], name
    assert typical["contenders"]["cli_process"]["loop_s"] > 0
    assert typical["workload"]["max_logs_a_block"] <= 40
    assert results["b2"]["verify"]["exactly_once"]
    for workload in ("small", "heavy"):
        for contender in ("lower_bound", "sidecar"):
            row = results["b2"]["head_to_head"][workload][contender]
            assert row["verify"]["exactly_once"], (workload, contender)
            assert row["conns_2"]["statuses"] == {"200": 20}, (workload, contender)
    assert results["b2"]["success_200"]["errors"] == 0
    sparse = results["b3"]["sparse"]
    assert sparse["empty"]["events"] == 0
    assert sparse["50_events"]["events"] == 50
    capped = results["b3"]["sparse_behind_block_cap"]  # 5,000 blocks behind a 100-block cap
    assert capped["events"] == 50 and capped["refused"] == 1
    assert capped["get_logs_requests"] <= 1.2 * capped["ideal_requests"]
    assert set(results["b3"]["sensor"]["ticks_s"]) == {
        "3_partitions",
        "3_partitions_no_cursor",
        "30_partitions",
        "30_partitions_no_cursor",
    }
    cold = results["b3"]["sensor_cold_start"]  # 4 windows, 3 per run: a range and a single
    assert (cold["range_runs"]["runs"], cold["one_per_window"]["runs"]) == (2, 4)


def test_cli_startup_bench_runs_the_recovery_over_an_empty_block() -> None:
    result = cli_startup.main(["--runs", "1", "--smoke"])
    assert set(result) == {"after"}
    assert result["after"]["runs"] == len(result["after"]["wall_s"]) == 1
    assert result["after"]["cpu_s_median"] > 0
