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


# --- placeholders on a public network ---------------------------------------------------

BASE = {"NETWORK": "BASE_MAINNET", "GLISK_START_BLOCK": "30000000"}
ZERO = "0x" + "00" * 20


@pytest.mark.parametrize("entry", ["cli", "sidecar"])
def test_the_zero_contract_address_is_refused_on_base(entry: str, tmp_path: Path) -> None:
    out = run(ENTRY_POINTS[entry], tmp_path, **BASE, GLISK_NFT_CONTRACT_ADDRESS=ZERO)
    one_line_naming(out, "GLISK_NFT_CONTRACT_ADDRESS")
    assert "zero address" in out.stderr


@pytest.mark.parametrize("network", ["BASE_MAINNET", "BASE_SEPOLIA"])
def test_start_block_zero_is_refused_on_base_unless_confirmed(network: str, tmp_path: Path) -> None:
    refused = run(ENTRY_POINTS["cli"], tmp_path, NETWORK=network, GLISK_START_BLOCK="0")
    one_line_naming(refused, "GLISK_START_BLOCK")
    assert "GLISK_ALLOW_START_BLOCK_ZERO" in refused.stderr
    # confirmed: past the configuration, the recovery goes on to the (unreachable) node
    confirmed = run(
        ENTRY_POINTS["cli"],
        tmp_path,
        NETWORK=network,
        GLISK_START_BLOCK="0",
        GLISK_ALLOW_START_BLOCK_ZERO="true",
    )
    assert "config error" not in confirmed.stderr and confirmed.returncode != 0, confirmed


def test_status_refuses_start_block_zero_on_base(tmp_path: Path) -> None:
    out = run(["glisk_pipeline.cli", "status"], tmp_path, NETWORK="BASE_MAINNET")
    one_line_naming(out, "GLISK_START_BLOCK")


def test_the_sidecar_does_not_judge_the_start_block(tmp_path: Path) -> None:
    # it never reads GLISK_START_BLOCK's blocks: a start block of 0 does not stop it (it
    # goes on to the port check, which a port held here makes it fail naming WEBHOOK_PORT)
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = str(holder.getsockname()[1])
        out = run(
            ENTRY_POINTS["sidecar"],
            tmp_path,
            NETWORK="BASE_MAINNET",
            WEBHOOK_PORT=port,
            WEBHOOK_HOST="127.0.0.1",
        )
    one_line_naming(out, "WEBHOOK_PORT")


def test_a_local_chain_may_start_at_block_zero_with_any_address(tmp_path: Path) -> None:
    out = run(ENTRY_POINTS["cli"], tmp_path, GLISK_START_BLOCK="0", GLISK_NFT_CONTRACT_ADDRESS=ZERO)
    assert "config error" not in out.stderr, out.stderr
