# ruff: noqa: E501  (table rows read better on one line each)
"""The figures table printed by `make bench` and pasted into bench/SUMMARY.md."""

from __future__ import annotations

from typing import Any


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _phase(p: dict[str, Any]) -> str:
    """A closed-loop phase: rate (p50 · p99, server · PostgreSQL CPU per request); older
    results have no PostgreSQL figure."""
    cpu = f"{p['server_cpu_ms_per_request']} · {p.get('postgres_cpu_ms_per_request', '?')}"
    return f"{p['per_s']:,} ({p['p50_ms']} · {p['p99_ms']}, {cpu})"


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| figure | value | target | holds |", "|---|---|---|---|"]

    def add(name: str, value: Any, target: str = "", holds: bool | None = None) -> None:
        mark = "" if holds is None else ("yes" if holds else "**no**")
        lines.append(_row([name, value, target, mark]))

    if b1 := results.get("b1"):
        c, r = b1["contenders"], b1["ratios"]
        for name, row in c.items():
            add(
                f"B1 {name} ev/s · tok/s · RPC calls",
                f"{row['events_per_s']:,} · {row['tokens_per_s']:,} · {row['rpc_calls']} ({row['events']} ev)",
            )
        add(
            "B1 project / baseline",
            f"{r['project_over_baseline']}×",
            "≥ 20×",
            r["project_over_baseline"] >= 20,
        )
        add(
            "B1 project / idempotent ceiling",
            f"{r['project_over_idempotent_ceiling']:.0%}",
            "≥ 50%",
            r["project_over_idempotent_ceiling"] >= 0.5,
        )
        if "cli_over_idempotent_ceiling" in r:
            cli = r["cli_over_idempotent_ceiling"]
            add("B1 recovery CLI process / idempotent ceiling", f"{cli:.0%}", "≥ 50%", cli >= 0.5)
        add("B1 project / raw ceiling", f"{r['project_over_raw_ceiling']:.0%}")
        if "materialize_over_bare" in r:
            m = r["materialize_over_bare"]
            add("B1 materialize / bare path (time)", f"{m}×", "≤ 1.5×", m <= 1.5)
        for label, mem in b1["project_peak_memory"].items():
            add(
                f"B1 project peak RSS, {label}",
                f"{mem['peak_rss_mb']:.0f} MB (imports {mem['rss_after_imports_mb']:.0f} MB)",
            )
    if t := results.get("b1_typical") or results.get("b1", {}).get("typical"):
        for name, row in t["contenders"].items():
            add(
                f"B1 typical {name} ev/s · tok/s · RPC calls · s",
                f"{row['events_per_s']:,} · {row['tokens_per_s']:,} · {row['rpc_calls']} · {row['seconds']} ({row['events']} ev)",
            )
        tr = t["ratios"]
        for key, label, goal in (
            ("cli_over_idempotent_ceiling", "recovery CLI process", 0.5),
            ("cli_loop_over_idempotent_ceiling", "recovery CLI's loop", 0.6),
            ("project_over_idempotent_ceiling", "project path (in process)", None),
        ):
            add(
                f"B1 typical {label} / idempotent ceiling",
                f"{tr[key]:.0%}",
                f"≥ {goal:.0%}" if goal else "",
                tr[key] >= goal if goal else None,
            )
    if b2 := results.get("b2"):
        for workload, h in b2.get("head_to_head", {}).items():
            conns = sorted(int(k.split("_")[1]) for k in h["sidecar"] if k.startswith("conns_"))
            lo, hi = f"conns_{conns[0]}", f"conns_{conns[-1]}"
            for name in ("lower_bound", "sidecar"):
                row = h[name]
                add(
                    f"B2 {workload}: {name} /s (p50 · p99 ms, server · PostgreSQL CPU ms/req) "
                    f"at {conns[0]} · {conns[-1]} conns",
                    " · ".join(_phase(row[c]) for c in (lo, hi)),
                    "exactly once",
                    row["verify"]["exactly_once"],
                )
            r = h["ratios"]
            small = workload == "small"  # the targets are set on a real Glisk mint's shape
            ratio = r[f"sidecar_over_lower_bound_{hi}"]
            add(
                f"B2 {workload}: sidecar / lower bound at {conns[-1]} conns",
                f"{ratio}×",
                "≥ 0.6×" if small else "",
                ratio >= 0.6 if small else None,
            )
            p99 = h["sidecar"][lo]["p99_ms"]
            add(
                f"B2 {workload}: sidecar p99 at {conns[0]} conns",
                f"{p99} ms",
                "≤ 10 ms" if small else "",
                p99 <= 10 if small else None,
            )
            up = r["sidecar_high_over_low_conns"]
            add(
                f"B2 {workload}: sidecar /s at {conns[-1]} over {conns[0]} conns",
                f"{up}×",
                "≥ 1×" if small else "",
                up >= 1 if small else None,
            )
        s, d, b = b2["success_200"], b2["duplicate_409"], b2["bad_signature_401"]
        add(
            "B2 max stored deliveries/s (no errors)",
            s["max_sustained_per_s"],
            "≥ 1,000",
            s["max_sustained_per_s"] >= 1000,
        )
        for name, prof in (("200", s), ("409", d), ("401", b)):
            for key, label in (("at_200_per_s", "200/s"), ("at_80pct_of_max", "80% max")):
                ph = prof[key]
                add(
                    f"B2 {name} path p50/p95/p99 ms at {label} ({ph['per_s']}/s, gen CPU {ph['generator_cpu_pct']}%)",
                    f"{ph['p50_ms']} / {ph['p95_ms']} / {ph['p99_ms']}",
                    "p99 ≤ 25" if (name, key) == ("200", "at_200_per_s") else "",
                    ph["p99_ms"] <= 25 if (name, key) == ("200", "at_200_per_s") else None,
                )
            add(f"B2 {name} path max/s", prof["max"]["per_s"])
        add(
            "B2 401 / success throughput",
            f"{b2['ratio_401_over_success_max']}×",
            "≥ 3×",
            b2["ratio_401_over_success_max"] >= 3,
        )
        v = b2["verify"]
        add(
            "B2 every delivered log stored exactly once",
            f"{v['rows']}/{v['logs_delivered']}",
            "all",
            v["exactly_once"],
        )
    if b3 := results.get("b3"):
        sp = b3["sparse"]
        for label, row in sp.items():
            if isinstance(row, dict):
                ok = row["rpc_calls"] <= 20
                add(
                    f"B3 {sp['blocks']:,} blocks, {label}: RPC calls · s",
                    f"{row['rpc_calls']} · {row['seconds']}",
                    "≤ 20 calls",
                    ok,
                )
        w = b3["webhook_vs_rows"]
        keys = [k for k in w if k.endswith("_rows") and isinstance(w[k], dict)]
        for k in keys:
            add(
                f"B3 webhook p50/p95/p99 ms at {w['per_s']}/s, {k}",
                f"{w[k]['p50_ms']} / {w[k]['p95_ms']} / {w[k]['p99_ms']}",
            )
        for label, tick in b3.get("sensor", {}).get("ticks_s", {}).items():
            n, _, kind = label.partition("_")
            add(
                f"B3 chain_head_sensor tick, {int(n):,} {kind.replace('_', ' ')}",
                f"{tick} s",
                "< 1 s at 10k" if n == "10000" else "",
                tick < 1 if n == "10000" else None,
            )
        if cold := b3.get("sensor_cold_start"):
            per_run, windows = cold["per_run"], cold["windows"]
            for label in ("range_runs", "one_per_window"):
                row = cold[label]
                launched = row.get("launched_estimate_s")
                add(
                    f"B3 sensor cold start, {windows} windows, {label.replace('_', ' ')}: "
                    "runs · s in process" + (" · s launched (est.)" if launched else ""),
                    f"{row['runs']} · {row['seconds']}" + (f" · {launched}" if launched else ""),
                    f"≤ {-(-windows // per_run)} runs" if label == "range_runs" else "",
                    row["runs"] <= -(-windows // per_run) if label == "range_runs" else None,
                )
            add(
                "B3 sensor cold start, one-per-window / range time (in process)",
                f"{cold['in_process_time_ratio']}×",
            )
            if "launched_estimate_ratio" in cold:
                add(
                    "B3 sensor cold start, one-per-window / range time (launched, est.)",
                    f"{cold['launched_estimate_ratio']}× ({cold['process_run_s']} s a process run)",
                )
    return "\n".join(lines)
