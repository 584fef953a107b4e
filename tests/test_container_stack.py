"""The image and the compose stack, for real: podman builds the repository's Dockerfile on a
base made from Debian's packages (scripts/containers.sh), then runs deploy/compose.yaml's
services from that image (tests/support/container_support.py says how it differs from `docker
compose up`: host networking, the machine's PostgreSQL). An operator then drives it:
chain_head_sensor turned on and a backfill launched over the webserver's GraphQL, signed
deliveries posted to the sidecar; the tables equal the chain, every health check passes,
every container runs as uid 10001 on a read-only root, and each stops on SIGTERM.

Slow (minutes on a fresh machine: installing podman, debootstrap, the build; the caches
make later runs cheaper), and part of `make test`. It needs root (rootful podman, apt-get):
the CI runs as root. It never skips: a machine that cannot run it fails it, saying why.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.anvil import free_port
from devtools.dagster_dev import DagsterDev
from devtools.oracle import chain_logs, decode_mint
from devtools.replay import chain_deliveries, signed
from tests.support.container_support import (
    PORTS,
    STOP_SECONDS,
    Stack,
    build_image,
    podman,
    prepare_machine,
    running,
)
from tests.support.deploy_support import history_windows, live_mints
from tests.support.fixtures_chain import DevChain
from tests.test_deploy_topology import _mismatches, location_loaded, sensor_covers

# a fresh machine installs podman, bootstraps Debian and builds the image (~10 min on 2 cores)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

REPOSITORY = "localhost/glisk-pipeline"
SIZE = 100
SECRET = "whsec_container_0123456789"
# every character that breaks a password inside a URL: the stack must not care
PASSWORD = "p@ss:w/rd%41#?&"
DEFAULT_AUTHOR = "0x" + "d0" * 20
LONG_RUNNING = ("code-server", "webserver", "daemon", "webhook")


def lap(since: float) -> float:
    return time.monotonic() - since


def wait_until(what: str, check: Any, stack: Stack, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        dead = [s for s in LONG_RUNNING if not stack.state(s)["State"]["Running"]]
        assert not dead, f"{dead} exited while waiting for {what}"
        try:
            result = check()
        except httpx.TransportError:
            result = None
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


def env_file(path: Path, devchain: DevChain, start: int) -> Path:
    """deploy/.env as an operator fills it in from .env.example."""
    settings = {
        "POSTGRES_PASSWORD": PASSWORD,
        "NETWORK": "LOCAL",
        "RPC_URL": devchain.anvil.url,
        "GLISK_NFT_CONTRACT_ADDRESS": devchain.glisk,
        "GLISK_DEFAULT_AUTHOR_WALLET": DEFAULT_AUTHOR,
        "GLISK_START_BLOCK": str(start),
        "GLISK_PARTITION_SIZE": str(SIZE),
        "GLISK_CONFIRMATIONS": "0",
        "ALCHEMY_WEBHOOK_SECRET": SECRET,
        "DATABASE_POOL_SIZE": "2",
        "DATABASE_MAX_OVERFLOW": "2",
    }
    path.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    return path


def test_image_and_compose_stack(
    devchain: DevChain, fresh_databases: tuple[str, str], tmp_path: Path
) -> None:
    began = time.monotonic()
    env = prepare_machine()
    t_machine = lap(began)
    image = build_image(env, REPOSITORY)
    t_build = lap(began) - t_machine
    print(f"\nmachine ready in {t_machine:.1f}s, image built in {t_build:.1f}s")

    app_url, dagster_url = fresh_databases
    anvil = devchain.anvil
    start, windows = history_windows(devchain, SIZE, n_batches=40, n_blocks=150, seed=7)
    assert len(windows) >= 2

    stack = Stack(
        env=env,
        image=image,
        variables={"POSTGRES_PASSWORD": PASSWORD, "GLISK_IMAGE": image},
        env_file=env_file(tmp_path / ".env", devchain, start),
        overrides={"DATABASE_URL": app_url, "DAGSTER_PG_URL": dagster_url},
        ports={port: str(free_port()) for port in PORTS},
    )
    t_start = time.monotonic()
    with running(stack) as services:
        # the compose file's own wiring reached the containers
        assert services["webhook"].environment["PGPASSWORD"] == PASSWORD
        assert all(PASSWORD not in v for s in services.values() for k, v in (
            s.environment.items()) if k != "PGPASSWORD")  # fmt: skip
        web = f"http://127.0.0.1:{stack.ports['3000']}"
        dagster = DagsterDev(tmp_path, {}, None, port=int(stack.ports["3000"]))
        sidecar = httpx.Client(base_url=f"http://127.0.0.1:{stack.ports['8000']}", timeout=30)
        try:
            wait_until("the code location", lambda: location_loaded(dagster), stack, 180)
            wait_until("/readyz", lambda: sidecar.get("/readyz").status_code == 200, stack, 60)
            print(f"stack up and ready in {lap(t_start):.1f}s ({web})")
            t_up = time.monotonic()

            # 1. the sensor, turned on over GraphQL, adds the final windows and runs them
            sensor_covers(
                dagster, windows, lambda what, check, t: wait_until(what, check, stack, t), 240
            )

            # 2. a backfill of those windows over GraphQL
            backfill_id = dagster.launch_backfill(windows, [["mint_events"]])
            outcome = dagster.wait_backfill(backfill_id, windows, ["mint_events"], timeout=240)
            assert outcome.ok, outcome

            # 3. the live path: new mints, then every delivery of the chain, signed
            mints = live_mints(devchain, 20)
            deliveries = [signed(p, SECRET) for p in chain_deliveries(
                anvil.rpc_batch, devchain.glisk, start)]  # fmt: skip

            def post(delivery: tuple[bytes, dict[str, str]]) -> tuple[int, Any]:
                body, headers = delivery
                answer = sidecar.post("/webhooks/alchemy", content=body, headers=headers)
                return answer.status_code, answer.json()

            with ThreadPoolExecutor(4) as pool:
                answers = list(pool.map(post, deliveries))
            t_driven = time.monotonic()

            # every health check of the compose file passes; uid 10001 on a read-only root
            for service in LONG_RUNNING:
                assert stack.healthy(service), stack.logs(service)
            for service in ("migrate", *LONG_RUNNING):
                state = stack.state(service)
                assert state["HostConfig"]["ReadonlyRootfs"] is True, service
                assert state["Config"]["User"] == "10001:10001", service
            for service in LONG_RUNNING:
                name = stack.container(service)
                assert podman(env, "exec", name, "id", "-u").strip() == "10001", service
                denied = podman(env, "exec", name, "sh", "-c", "touch /app/x 2>&1; echo $?")
                assert "Read-only file system" in denied, (service, denied)
        finally:
            sidecar.close()
            dagster.http.close()

        t_stop = time.monotonic()
        exit_codes = stack.stop()
        print(
            f"sensor + backfill + replay in {t_driven - t_up:.1f}s; "
            f"stopped in {lap(t_stop):.1f}s: {exit_codes}"
        )

    assert stack.exit_codes["migrate"] == 0
    # SIGTERM stopped each one before podman's SIGKILL (137) after STOP_SECONDS
    killed = {s: code for s, code in stack.exit_codes.items() if code == 137}
    assert not killed, f"needed SIGKILL after {STOP_SECONDS}s: {killed}"
    assert {status for status, _ in answers} <= {200, 409}, answers
    stored = [e for status, body in answers if status == 200 for e in body.get("events", [])]
    assert len(stored) == len(mints)  # the backfilled mints answer duplicate
    chain_mints = [decode_mint(log) for log in chain_logs(anvil, devchain.glisk, start)]
    assert len(chain_mints) == 40 + len(mints)
    assert _mismatches(app_url, chain_mints) == []
    print(f"container test: {lap(began):.1f}s in all")
