"""A bad configuration as an operator meets it: each entry point (recovery CLI, migrate,
webhook sidecar) run as a subprocess stops with one line naming the variable, a non-zero
exit and no secret, instead of a driver traceback or minutes of retries."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

PASSWORD = "s3cr3t-pw"
RPC_KEY = "rpc-key-0123456789"
ENTRY_POINTS = {
    "cli": ["glisk_pipeline.cli.recover_events", "--from-block", "0", "--to-block", "1"],
    "migrate": ["glisk_pipeline.db.migrate"],
    "sidecar": ["webhook_service"],
}


def run(module: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": "/usr/bin:/bin",
        "NETWORK": "LOCAL",
        "RPC_URL": "http://127.0.0.1:9",
        "GLISK_NFT_CONTRACT_ADDRESS": "0x" + "11" * 20,
        "GLISK_DEFAULT_AUTHOR_WALLET": "0x" + "22" * 20,
        "ALCHEMY_WEBHOOK_SECRET": "whsec_test",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
    }
    return subprocess.run(
        [sys.executable, "-m", *module],
        env={**base, **env},
        cwd=tmp_path,  # no stray .env
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line_naming(out: subprocess.CompletedProcess[str], variable: str) -> None:
    assert out.returncode != 0, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0], out.stderr
    assert "Traceback" not in out.stdout + out.stderr


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize(
    "url",
    [
        "foo://bar",
        f"postgresql://glisk:{PASSWORD}@db.internal:port/glisk",  # non-numeric port
    ],
)
def test_a_bad_database_url_is_one_line(entry: str, url: str, tmp_path: Path) -> None:
    out = run(ENTRY_POINTS[entry], tmp_path, DATABASE_URL=url)
    one_line_naming(out, "DATABASE_URL")
    assert PASSWORD not in out.stdout + out.stderr


@pytest.mark.parametrize("url", ["not-a-url", f"ftp://node.example/{RPC_KEY}"])
def test_a_bad_rpc_url_is_one_line_not_six_retries(url: str, tmp_path: Path) -> None:
    out = run(ENTRY_POINTS["cli"], tmp_path, RPC_URL=url)
    one_line_naming(out, "RPC_URL")
    assert RPC_KEY not in out.stdout + out.stderr
    assert "attempts" not in out.stderr  # refused at start-up, not retried as transient


def test_sidecar_port_in_use_fails_first_naming_the_address(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        out = run(
            ENTRY_POINTS["sidecar"], tmp_path, WEBHOOK_HOST="127.0.0.1", WEBHOOK_PORT=str(port)
        )
    one_line_naming(out, "WEBHOOK_PORT")
    assert "WEBHOOK_HOST" in out.stderr
    assert "ready" not in out.stdout  # it never claimed to be up
