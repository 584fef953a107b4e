"""B2: the webhook sidecar as deployed (`python -m webhook_service`, the README's
default of 2 workers, real PostgreSQL) under load from bench.loadgen.

Head to head: the sidecar and a lower bound (bench/lower_bound.py, the least a handler
can do) on the same pre-signed deliveries, each on its own fresh database, closed loop at
2 and 32 connections, for a small workload (1 log, 1-3 tokens: a real Glisk mint) and a
heavy one (1-3 logs of 1-50 tokens), every log checked stored exactly once afterwards.
Then the sidecar's profile: maximum, fixed 200/s and 80% of the maximum for the stored,
duplicate and bad-signature paths."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import text

from bench.common import throwaway_db
from bench.deliveries import KEY, WORKLOADS, Factory, forged
from bench.loadgen import Phase, Request, closed_loop, fixed_rate
from devtools.local_chain import DEFAULT_AUTHOR
from glisk_pipeline.db.engine import make_engine
from tests.webhook.helpers import REPO, Service  # the tests' runner, stopped by PID

CONTRACT = "0x" + "c0" * 20
PATH = "/webhooks/alchemy"


@contextmanager
def service(db: str, workers: int = 2) -> Iterator[Service]:
    env = {
        "DATABASE_URL": db,
        "GLISK_NFT_CONTRACT_ADDRESS": CONTRACT,
        "GLISK_DEFAULT_AUTHOR_WALLET": DEFAULT_AUTHOR,
        "ALCHEMY_WEBHOOK_SECRET": KEY,
        "NETWORK": "LOCAL",
        "WEBHOOK_WORKERS": str(workers),
        # The load generator is one address playing many senders (up to 64 connections,
        # spread unevenly over the workers): the per-client cap, still checked on every
        # connection, must not be what limits it.
        "WEBHOOK_MAX_CONNECTIONS_PER_CLIENT": "256",
    }
    with _server(env) as svc:
        yield svc


@contextmanager
def lower_bound(db: str, workers: int = 2) -> Iterator[Service]:
    env = {
        "BENCH_DATABASE_URL": db,
        "BENCH_KEY": KEY,
        "BENCH_DEFAULT_AUTHOR": DEFAULT_AUTHOR,
        "PYTHONPATH": str(REPO),
    }
    argv = [sys.executable, "-m", "uvicorn", "bench.lower_bound:app", "--host", "127.0.0.1"]
    argv += ["--port", "{port}", "--workers", str(workers), "--no-access-log"]
    argv += ["--log-level", "warning"]
    with _server(env, argv) as svc:
        yield svc


@contextmanager
def _server(env: dict[str, str], argv: list[str] | None = None) -> Iterator[Service]:
    with tempfile.TemporaryDirectory(prefix="glisk-bench-") as tmp:
        svc = Service(env, Path(tmp), argv)
        try:
            yield svc
        finally:
            svc.stop()


CONTENDERS = {"lower_bound": lower_bound, "sidecar": service}


def head_to_head(n: dict[str, int], concs: tuple[int, ...], warmup: int) -> dict[str, Any]:
    """Both contenders on the same deliveries, each on its own fresh database, both
    running throughout and measured in alternation (a shared machine's load drifts: the
    two see the same conditions): per workload and number of connections, a closed-loop
    phase of distinct deliveries; then every log checked stored exactly once."""
    out: dict[str, Any] = {}
    for workload, shape in WORKLOADS.items():
        factory = Factory(CONTRACT, **shape)
        warm = factory.make(warmup)
        phases = {conc: factory.make(n[workload]) for conc in concs}
        rows: dict[str, dict[str, Any]] = {name: {} for name in CONTENDERS}
        with ExitStack() as stack:
            dbs, servers = {}, {}
            for name, start in CONTENDERS.items():
                dbs[name] = stack.enter_context(throwaway_db(f"b2{name[:2]}"))
                servers[name] = stack.enter_context(start(dbs[name]))
                _run(closed_loop(servers[name].url + PATH, warm, 8))  # connections, plans
            for conc, reqs in phases.items():
                for name in CONTENDERS:
                    rows[name][f"conns_{conc}"] = _measured(servers[name], reqs, conc)
            for name in CONTENDERS:
                rows[name]["verify"] = verify(dbs[name], factory)
        lb, sc = rows["lower_bound"], rows["sidecar"]
        hi, lo = f"conns_{max(concs)}", f"conns_{min(concs)}"
        out[workload] = {
            **rows,
            "deliveries_per_phase": n[workload],
            "ratios": {
                f"sidecar_over_lower_bound_{c}": round(sc[c]["per_s"] / lb[c]["per_s"], 2)
                for c in (lo, hi)
            }
            | {"sidecar_high_over_low_conns": round(sc[hi]["per_s"] / sc[lo]["per_s"], 2)},
        }
    return out


def _measured(server: Service, reqs: list[Request], conc: int) -> dict[str, Any]:
    """A closed-loop phase, with the CPU the server's processes spent per request, and
    PostgreSQL's (its local processes; the other contender is idle meanwhile). For the
    sidecar also the handler's own time per delivery, as its log lines give it (`ms`:
    from the handler's start to its answer, inside the worker), beside the client's."""
    cpu, db_cpu = group_cpu_s(server.proc.pid), postgres_cpu_s()
    logged = server.log_path.stat().st_size
    phase = _run(closed_loop(server.url + PATH, reqs, conc))
    n = max(1, phase.sent)
    per_request = (group_cpu_s(server.proc.pid) - cpu) / n
    db_per_request = (postgres_cpu_s() - db_cpu) / n
    out = {
        **phase.summary(),
        "server_cpu_ms_per_request": round(per_request * 1e3, 3),
        "postgres_cpu_ms_per_request": round(db_per_request * 1e3, 3),
    }
    if inside := handler_ms(server.log_path, logged):
        out["handler_ms"] = inside
    return out


def handler_ms(log_path: Path, offset: int) -> dict[str, float]:
    """From the delivery log lines written after `offset`: p50 / p99 / max of their `ms`
    (the handler's time inside the worker), p50 / p99 of `db_ms` (its database call,
    until the worker resumed), and the mean split of the slowest 1% of deliveries; empty
    for a server that logs none."""
    with open(log_path, "rb") as f:
        f.seek(offset)
        lines = list(map(_json_line, f.read().splitlines()))
    rows = sorted(
        (float(line["ms"]), float(line.get("db_ms", 0.0)))
        for line in lines
        if line.get("event") == "delivery" and "ms" in line
    )
    if not rows:
        return {}
    db = sorted(d for _, d in rows)
    slow = rows[len(rows) - max(1, len(rows) // 100) :]

    def pct(values: list[float], p: float) -> float:
        return round(values[min(len(values) - 1, int(p * len(values)))], 2)

    ms = [m for m, _ in rows]
    return {
        "lines": len(rows),
        "p50": pct(ms, 0.5),
        "p99": pct(ms, 0.99),
        "max": ms[-1],
        "db_p50": pct(db, 0.5),
        "db_p99": pct(db, 0.99),
        "slowest_1pct_mean": round(sum(m for m, _ in slow) / len(slow), 2),
        "slowest_1pct_db_mean": round(sum(d for _, d in slow) / len(slow), 2),
    }


def _json_line(raw: bytes) -> dict[str, Any]:
    try:
        line = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return line if isinstance(line, dict) else {}


def group_cpu_s(pgid: int) -> float:
    """User + system CPU seconds of the live processes in process group `pgid` (uvicorn's
    supervisor and its workers)."""
    return _cpu_s(lambda name, pgrp: pgrp == pgid)


def postgres_cpu_s() -> float:
    """CPU seconds of this machine's PostgreSQL processes (0 if the server is remote)."""
    return _cpu_s(lambda name, pgrp: name in ("postgres", "postmaster"))


def _cpu_s(match: Callable[[str, int], bool]) -> float:
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, tail = stat.read_text().rsplit(")", 1)
        except (OSError, ValueError):
            continue  # gone meanwhile
        fields = tail.split()
        # comm is between the first "(" and the last ")"; pgrp is field 2 after it, utime
        # and stime 11 and 12
        if match(head.split("(", 1)[1], int(fields[2])):
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _errors(phase: Phase, ok: int) -> int:
    return sum(v for k, v in phase.statuses.items() if k != ok)


def _run(coro: Any) -> Phase:
    return asyncio.run(coro)


def profile(url: str, make: Any, ok: int, seconds: float, max_n: int, conc: int) -> dict[str, Any]:
    """Max (closed loop), then fixed 200/s, then fixed 80% of max; `make(n)` gives requests."""
    best = _run(closed_loop(url, make(max_n), conc))
    out: dict[str, Any] = {"max": best.summary()}
    max_rate = best.sent / best.seconds
    out["max_sustained_per_s"] = round(max_rate, 1) if _errors(best, ok) == 0 else 0.0
    at200 = _run(fixed_rate(url, make(int(200 * seconds)), 200))
    out["at_200_per_s"] = at200.summary()
    r80 = 0.8 * max_rate
    at80 = _run(fixed_rate(url, make(int(r80 * seconds)), r80))
    out["at_80pct_of_max"] = {**at80.summary(), "target_per_s": round(r80, 1)}
    out["errors"] = sum(_errors(p, ok) for p in (best, at200, at80))
    return out


def verify(db: str, factory: Factory) -> dict[str, Any]:
    """Every delivered log stored exactly once, and all its tokens."""
    engine = make_engine(db)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT tx_hash, log_index FROM mint_events")).all()
            n_tokens = conn.execute(text("SELECT count(*) FROM tokens")).scalar_one()
    finally:
        engine.dispose()
    stored = {(r[0], r[1]) for r in rows}
    return {
        "logs_delivered": len(factory.logs),
        "rows": len(rows),
        "distinct_rows": len(stored),
        "exactly_once": len(rows) == len(stored) and stored == factory.logs,
        "tokens_expected": factory.tokens,
        "tokens_stored": n_tokens,
    }


def run(
    seconds: float = 5.0,
    max_n: int = 6000,
    conc: int = 32,
    warmup: int = 200,
    n_small: int = 8000,
    n_heavy: int = 3000,
    concs: tuple[int, ...] = (2, 32),
) -> dict[str, Any]:
    result: dict[str, Any] = {"workers": 2, "phase_seconds": seconds, "concurrency": conc}
    result["head_to_head"] = head_to_head({"small": n_small, "heavy": n_heavy}, concs, warmup)
    with throwaway_db("b2") as db, service(db) as svc:
        url = svc.url + PATH
        factory = Factory(CONTRACT)
        sent: list[Request] = []

        def fresh(n: int) -> list[Request]:
            reqs = factory.make(n)
            sent.extend(reqs)
            return reqs

        _run(closed_loop(url, fresh(warmup), 8))  # warm-up: connections, plans, pool
        result["success_200"] = profile(url, fresh, 200, seconds, max_n, conc)

        def cycle(pool: list[Request]) -> Any:
            return lambda n: [pool[i % len(pool)] for i in range(n)]

        result["duplicate_409"] = profile(url, cycle(list(sent)), 409, seconds, max_n, conc)
        result["bad_signature_401"] = profile(url, cycle(forged(sent)), 401, seconds, max_n, conc)
        result["verify"] = verify(db, factory)
    s, bad = result["success_200"], result["bad_signature_401"]
    result["ratio_401_over_success_max"] = round(bad["max"]["per_s"] / s["max"]["per_s"], 2)
    return result
