"""The deployment roles as commands, and a runner that starts each as its own process.

ROLES is the one list of what the image runs: the topology test starts exactly these
commands (with a host and port added where a role listens), and tests/test_deploy_files.py
checks that the Dockerfile, compose file, Helm values and manifests run the same ones.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from devtools.anvil import DEFAULT_MINT_PRICE, DEV_ACCOUNTS
from devtools.dagster_dev import session_pids
from devtools.history import Mint, mint_batches, realistic_history
from glisk_pipeline.windows import new_windows

REPO = Path(__file__).resolve().parents[2]
WORKSPACE = "deploy/workspace.yaml"  # relative: the image's WORKDIR holds deploy/
CODE_LOCATION = ["-m", "glisk_pipeline.definitions", "-a", "defs"]

# role -> argv, without the listening host/port options (deployments add their own)
ROLES: dict[str, list[str]] = {
    "code-server": ["dagster", "code-server", "start", *CODE_LOCATION],
    "webserver": ["dagster-webserver", "-w", WORKSPACE],
    "daemon": ["dagster-daemon", "run", "-w", WORKSPACE],
    "webhook": ["python", "-m", "webhook_service"],
    "migrate": ["python", "-m", "glisk_pipeline.db.migrate", "upgrade"],
    "cli": ["glisk"],
}


def snake_case_keys(value: Any) -> Any:
    """Every key in snake_case, as Helm's `snakecase` makes them (the Dagster chart renders
    camelCase values into the instance's snake_case config this way)."""
    if isinstance(value, dict):
        return {
            re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower(): snake_case_keys(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [snake_case_keys(v) for v in value]
    return value


def local_argv(argv: Sequence[str]) -> list[str]:
    """The same command with this virtualenv's interpreter and console scripts."""
    first = sys.executable if argv[0] == "python" else str(Path(sys.executable).parent / argv[0])
    return [first, *argv[1:]]


class RoleProcess:
    """One role as a process in its own session (its run workers and uvicorn workers stay
    in it); output to a log file; stop() signals exactly the group its own PID leads."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_dir: Path,
        url: str = "",
    ) -> None:
        self.name, self.url = name, url  # url: where it answers HTTP, if it does
        self.log_path = log_dir / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                local_argv(argv),
                cwd=REPO,
                env=dict(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid = self.proc.pid
        self.killed = False  # stop() needed SIGKILL: the role ignored SIGTERM

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        return f"--- {self.name} ---\n" + self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float = 20.0) -> list[int]:
        """SIGTERM to the process group its PID leads, SIGKILL after `timeout`; returns
        the PIDs of its session still alive afterwards (should be none)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while session_pids(self.pid) and time.monotonic() < deadline:
            self.proc.poll()  # reap it, or it stays a zombie of ours
            time.sleep(0.2)
        if session_pids(self.pid):
            self.killed = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            time.sleep(0.5)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        return session_pids(self.pid)


def history_windows(
    devchain: Any, size: int, n_batches: int, n_blocks: int, seed: int
) -> tuple[int, list[str]]:
    """A minted history on the dev chain followed by `size` empty blocks, so every window
    of it is complete and final (confirmations 0): (its first block, its window keys)."""
    anvil = devchain.anvil
    start = anvil.block_number() + 1
    realistic_history(
        anvil, devchain.glisk, devchain.decoy, n_batches=n_batches, n_blocks=n_blocks, seed=seed
    )
    anvil.mine_empty(size)
    windows = new_windows(
        start_block=start, size=size, final_block=anvil.block_number(), after_block=None, limit=99
    )
    return start, windows


def live_mints(devchain: Any, count: int) -> list[Mint]:
    """`count` new mints, 3 per block, from five minters for five authors."""
    minters, authors = DEV_ACCOUNTS[:5], DEV_ACCOUNTS[5:]
    mints = [
        Mint(minters[i % 5], authors[i % 5], 1 + i % 7, DEFAULT_MINT_PRICE * 7)
        for i in range(count)
    ]
    mint_batches(devchain.anvil, devchain.glisk, mints, per_block=3)
    return mints
