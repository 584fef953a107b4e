"""The recovery loop against another checkout's, on one typical chain: `glisk recover` of
each, alternating run by run (a shared machine's load drifts: both see the same), each
into its own fresh, migrated database. Reported per checkout: the loop's seconds (the
CLI's own "Done: ... in X s"), events/s in the loop, RPC calls, and the median ratios.

    .venv/bin/python -m bench.b1_compare --before /work/other/.venv/bin/python --runs 3
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from typing import Any

from bench.common import RESULTS, bench_chain, throwaway_db
from bench.run import FULL, SMOKE
from devtools.history import TYPICAL_QUANTITIES
from devtools.local_chain import DEFAULT_AUTHOR

RESULT = RESULTS / "b1_compare.json"
_DONE = re.compile(r"Done: (\d+) events found, .*; (\d+) RPC calls .* in ([0-9.]+) ?s")


def _recover(
    python: str, env: dict[str, str], cwd: str, lo: int, hi: int
) -> tuple[int, int, float]:
    """(events, RPC calls, loop seconds) of one `glisk recover` over [lo, hi]."""
    argv = [python, "-m", "glisk_pipeline.cli.recover_events", "--from-block", str(lo)]
    out = subprocess.run(
        [*argv, "--to-block", str(hi)], env=env, cwd=cwd, capture_output=True, text=True
    )
    done = _DONE.search(out.stdout)
    if out.returncode != 0 or done is None:
        raise RuntimeError(f"{python}: recovery exited {out.returncode}: {out.stderr[-500:]}")
    return int(done[1]), int(done[2]), float(done[3])


def measure(pythons: dict[str, str], runs: int, shape: dict[str, Any]) -> dict[str, Any]:
    samples: dict[str, list[tuple[int, int, float]]] = {name: [] for name in pythons}
    knobs = {k: shape[k] for k in ("per_block", "active_share")}
    with ExitStack() as stack:
        chain = stack.enter_context(
            bench_chain(
                shape["n_batches"],
                shape["n_blocks"],
                seed=7,
                quantities=TYPICAL_QUANTITIES,
                **knobs,
            )
        )
        lo, hi = chain.history.from_block, chain.history.to_block
        cwd = stack.enter_context(tempfile.TemporaryDirectory(prefix="glisk-b1-compare-"))
        for i in range(runs):
            order = list(pythons) if i % 2 == 0 else list(pythons)[::-1]
            for name in order:
                with throwaway_db(f"cmp{name[:2]}", migrate=False) as db:
                    env = {
                        "PATH": "/usr/bin:/bin",
                        "HOME": "/tmp",
                        "DATABASE_URL": db,
                        "RPC_URL": chain.anvil.url,
                        "NETWORK": "LOCAL",
                        "GLISK_NFT_CONTRACT_ADDRESS": chain.contract,
                        "GLISK_DEFAULT_AUTHOR_WALLET": DEFAULT_AUTHOR,
                        "GLISK_START_BLOCK": str(lo),
                        "GLISK_CONFIRMATIONS": "0",
                    }
                    migrate = [pythons[name], "-m", "glisk_pipeline.db.migrate"]
                    subprocess.run(migrate, env=env, cwd=cwd, check=True, capture_output=True)
                    samples[name].append(_recover(pythons[name], env, cwd, lo, hi))
    result: dict[str, Any] = {"workload": shape, "runs": runs}
    for name, xs in samples.items():
        result[name] = {
            "events": xs[0][0],
            "rpc_calls": [c for _, c, _ in xs],
            "loop_s": [s for _, _, s in xs],
            "loop_events_per_s_median": round(statistics.median(e / s for e, _, s in xs), 1),
        }
    if "before" in samples:
        result["after_over_before_loop_rate"] = round(
            result["after"]["loop_events_per_s_median"]
            / result["before"]["loop_events_per_s_median"],
            3,
        )
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.b1_compare")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--before", help="another checkout's venv python, run alternately")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; results not written")
    args = parser.parse_args(argv)
    pythons = {"after": sys.executable} | ({"before": args.before} if args.before else {})
    shape = (SMOKE if args.smoke else FULL)["b1_typical"]
    result = measure(pythons, args.runs, shape)
    print(json.dumps(result, indent=1))
    if not args.smoke:
        RESULT.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
