"""B2 before/after: the sidecar of another checkout ("before", e.g. a worktree of main) and
this one ("after"), both up at once on their own fresh databases, measured in alternation
on the same pre-signed deliveries (B2's closed-loop phases at 2 and 32 connections, small
and heavy workloads), for several rounds. A shared machine's load swings between rounds,
so each figure is the median over rounds of after/before, plus the server CPU per
delivery (the least load-sensitive figure).

    .venv/bin/python -m bench.b2_compare --before /work/other/.venv/bin/python --rounds 5
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench import b2_webhook as b2
from bench.common import throwaway_db
from bench.deliveries import KEY, WORKLOADS, Factory
from devtools.local_chain import DEFAULT_AUTHOR
from tests.webhook.helpers import Service

SIZES = {"small": 4000, "heavy": 1500}
RESULT = Path(__file__).parent / "results" / "b2_compare.json"


def _env(db: str) -> dict[str, str]:
    return {
        "DATABASE_URL": db,
        "GLISK_NFT_CONTRACT_ADDRESS": b2.CONTRACT,
        "GLISK_DEFAULT_AUTHOR_WALLET": DEFAULT_AUTHOR,
        "ALCHEMY_WEBHOOK_SECRET": KEY,
        "NETWORK": "LOCAL",
        "WEBHOOK_WORKERS": "2",
        "WEBHOOK_MAX_CONNECTIONS_PER_CLIENT": "256",  # as in B2 (ignored by older code)
    }


def contenders(before_python: str) -> dict[str, Callable[[str], AbstractContextManager[Service]]]:
    @contextmanager
    def before(db: str) -> Iterator[Service]:
        with b2._server(_env(db), [before_python, "-m", "webhook_service"]) as svc:
            yield svc

    @contextmanager
    def after(db: str) -> Iterator[Service]:
        with b2._server(_env(db)) as svc:
            yield svc

    return {"before": before, "after": after}


def compare(before_python: str, rounds: int, sizes: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for workload, n in sizes.items():
        factory = Factory(b2.CONTRACT, **WORKLOADS[workload])
        warm = factory.make(200)
        rows: dict[str, dict[str, list[dict[str, Any]]]] = {"before": {}, "after": {}}
        with ExitStack() as stack:
            servers = {}
            for name, start in contenders(before_python).items():
                db = stack.enter_context(throwaway_db(f"b2c{name[:2]}"))
                servers[name] = stack.enter_context(start(db))
                b2._run(b2.closed_loop(servers[name].url + b2.PATH, warm, 8))
            for rnd in range(rounds):
                for conc in (2, 32):
                    reqs = factory.make(n)
                    order = ["before", "after"] if rnd % 2 == 0 else ["after", "before"]
                    for name in order:
                        phase = b2._measured(servers[name], reqs, conc)
                        rows[name].setdefault(f"conns_{conc}", []).append(phase)
        out[workload] = {"rounds": rows, "ratios": _ratios(rows)}
    return out


def _ratios(rows: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    def median(xs: list[float]) -> float:
        return round(sorted(xs)[len(xs) // 2], 3)

    ratios = {}
    for key, after in rows["after"].items():
        before = rows["before"][key]
        pairs = list(zip(after, before, strict=True))
        cpu = [p["server_cpu_ms_per_request"] for p in after]
        cpu_before = [p["server_cpu_ms_per_request"] for p in before]
        ratios[key] = {
            "throughput_after_over_before": median([a["per_s"] / b["per_s"] for a, b in pairs]),
            "p99_after_over_before": median([a["p99_ms"] / b["p99_ms"] for a, b in pairs]),
            "cpu_per_delivery_after_over_before": round(sum(cpu) / sum(cpu_before), 3),
            "non_200": sum(
                v for p in after + before for s, v in p["statuses"].items() if s != "200"
            ),
        }
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.b2_compare")
    parser.add_argument("--before", required=True, help="the other checkout's python")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes")
    args = parser.parse_args()
    sizes = {"small": 40, "heavy": 20} if args.smoke else SIZES
    result = compare(args.before, args.rounds, sizes)
    print(json.dumps({w: r["ratios"] for w, r in result.items()}, indent=1))
    if not args.smoke:
        RESULT.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
