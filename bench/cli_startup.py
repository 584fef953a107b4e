"""The recovery command's fixed cost: `python -m glisk_pipeline.cli.recover_events` over
one empty block, wall and CPU time, median of N runs after a discarded first one (it
writes bytecode where none is). Everything it does before and after the loop is in it:
interpreter, imports, settings, engine, schema-revision check, chain id, head, exit.

With --before, another checkout's venv python runs the same command from that checkout,
on its own migrated database, alternating with this one run by run (a shared machine's
load drifts: both see the same conditions).

    .venv/bin/python -m bench.cli_startup --runs 7 --before /work/other/.venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from typing import Any

from bench.common import RESULTS, throwaway_db
from devtools.anvil import DEFAULT_MINT_PRICE, Anvil, deploy
from devtools.local_chain import DEFAULT_AUTHOR

RESULT = RESULTS / "cli_startup.json"


def _env(db: str, rpc: str, contract: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DATABASE_URL": db,
        "RPC_URL": rpc,
        "NETWORK": "LOCAL",
        "GLISK_NFT_CONTRACT_ADDRESS": contract,
        "GLISK_DEFAULT_AUTHOR_WALLET": DEFAULT_AUTHOR,
        "GLISK_START_BLOCK": "1",
        "GLISK_CONFIRMATIONS": "0",
    }


def _timed(python: str, env: dict[str, str], cwd: str) -> tuple[float, float]:
    """(wall, CPU) seconds of one run over block 1, which holds no mint."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    argv = [python, "-m", "glisk_pipeline.cli.recover_events", "--from-block", "1"]
    out = subprocess.run(
        [*argv, "--to-block", "1"], env=env, cwd=cwd, capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise RuntimeError(f"{python}: recovery exited {out.returncode}: {out.stderr[-500:]}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu


def measure(pythons: dict[str, str], runs: int) -> dict[str, Any]:
    """Per contender (name -> its venv's python): median wall and CPU seconds."""
    with ExitStack() as stack:
        anvil = stack.enter_context(Anvil())
        contract = deploy(anvil, "GliskNFT", DEFAULT_MINT_PRICE).lower()
        cwd = stack.enter_context(tempfile.TemporaryDirectory(prefix="glisk-startup-"))
        envs = {}
        for name, python in pythons.items():
            # each checkout migrates its own database: its schema is the one it checks
            db = stack.enter_context(throwaway_db(f"st{name[:2]}", migrate=False))
            envs[name] = _env(db, anvil.url, contract)
            migrate = [python, "-m", "glisk_pipeline.db.migrate"]
            subprocess.run(migrate, env=envs[name], cwd=cwd, check=True, capture_output=True)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in pythons}
        for i in range(runs + 1):
            order = list(pythons) if i % 2 == 0 else list(pythons)[::-1]
            for name in order:
                wall, cpu = _timed(pythons[name], envs[name], cwd)
                if i:  # the first run of each writes bytecode: discarded
                    samples[name].append((wall, cpu))
    return {
        name: {
            "runs": runs,
            "wall_s_median": round(statistics.median(w for w, _ in xs), 3),
            "cpu_s_median": round(statistics.median(c for _, c in xs), 3),
            "wall_s": [round(w, 3) for w, _ in xs],
        }
        for name, xs in samples.items()
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.cli_startup")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--before", help="another checkout's venv python, run alternately")
    parser.add_argument("--smoke", action="store_true", help="results not written")
    args = parser.parse_args(argv)
    pythons = {"after": sys.executable} | ({"before": args.before} if args.before else {})
    result = measure(pythons, args.runs)
    print(json.dumps(result, indent=1))
    if not args.smoke:
        RESULT.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
