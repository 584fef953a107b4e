"""`python -m bench [--smoke] [--only b1,b2,b3]` (or b1_typical): run the benchmarks, write
bench/results/<name>.json, print the table. Full sizes take ~10 minutes on 2 cores;
--smoke uses tiny sizes (the test suite runs it so the benchmarks cannot rot)."""

from __future__ import annotations

import argparse
import datetime
import platform
import time
from typing import Any

from bench import b1_backfill, b2_webhook, b3_scaling
from bench.common import RESULTS, write_result
from bench.report import table

FULL: dict[str, dict[str, Any]] = {
    "b1": {
        "n_batches": 20_000,
        "n_blocks": 5_000,
        "baseline_events": 2_000,
        "big_batches": 100_000,
        # the typical shape: ~12 ids a log, up to 40 logs a block
        "typical_shape": {
            "n_batches": 20_000,
            "n_blocks": 4_732,
            "per_block": 40,
            "active_share": 0.25,
        },
    },
    "b2": {"seconds": 5.0, "max_n": 6_000, "conc": 32, "n_small": 8_000, "n_heavy": 3_000},
    "b3": {"n_blocks": 1_000_000, "n_events": 20_000, "rows": 1_000_000, "seconds": 5.0},
}
SMOKE: dict[str, dict[str, Any]] = {
    "b1": {
        "n_batches": 60,
        "n_blocks": 40,
        "baseline_events": 10,
        "big_batches": 60,
        "typical_shape": {"n_batches": 60, "n_blocks": 40, "per_block": 40, "active_share": 0.25},
    },
    "b2": {
        "seconds": 0.2,
        "max_n": 40,
        "conc": 4,
        "warmup": 10,
        "n_small": 20,
        "n_heavy": 20,
        "concs": (2, 4),
    },
    "b3": {
        "n_blocks": 5_000,
        "n_events": 50,
        "block_cap": 100,
        "rows": 1_000,
        "seconds": 0.2,
        "warmup": 10,
        "sensor_partitions": (3, 30),
        "cold_windows": 4,
        "cold_per_run": 3,
        "cold_process_samples": 0,  # ~7 s a process: not in the test suite
    },
}
# B1's typical shape alone (`--only b1_typical`, ~1 minute): the same runs as in b1
FULL["b1_typical"] = FULL["b1"]["typical_shape"]
SMOKE["b1_typical"] = SMOKE["b1"]["typical_shape"]
RUNNERS = {
    "b1": b1_backfill.run,
    "b1_typical": b1_backfill.typical,
    "b2": b2_webhook.run,
    "b3": b3_scaling.run,
}


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; results not written")
    parser.add_argument("--only", default="b1,b2,b3")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    results: dict[str, dict[str, Any]] = {}
    for name in args.only.split(","):
        started = time.perf_counter()
        results[name] = RUNNERS[name](**sizes[name])
        results[name]["bench_seconds"] = round(time.perf_counter() - started, 1)
        results[name]["sizes"] = sizes[name]
        results[name]["machine"] = {
            "date": datetime.date.today().isoformat(),
            "python": platform.python_version(),
        }
        if not args.smoke:
            write_result(name, results[name])
        print(f"{name}: done in {results[name]['bench_seconds']} s", flush=True)
    print(table(results))
    if not args.smoke:
        print(f"results in {RESULTS}/")
    return results


if __name__ == "__main__":
    main()
