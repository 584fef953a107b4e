"""Settings: one clear line naming the variable; secrets never echoed."""

from __future__ import annotations

from pathlib import Path

import pytest

from glisk_pipeline.settings import ConfigError, Network, load_settings

ADDR = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # EIP-55 checksummed (anvil's account 0)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in (
        "ALCHEMY_API_KEY",
        "ALCHEMY_WEBHOOK_SECRET",
        "GLISK_NFT_CONTRACT_ADDRESS",
        "NETWORK",
        "GLISK_DEFAULT_AUTHOR_WALLET",
        "DATABASE_URL",
        "RPC_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_are_embedded_sqlite_and_lowercase_addresses(monkeypatch) -> None:
    monkeypatch.setenv("GLISK_NFT_CONTRACT_ADDRESS", ADDR)
    s = load_settings()
    assert s.DATABASE_URL.startswith("sqlite:///")
    assert s.contract_address == ADDR.lower()
    assert s.GLISK_PARTITION_SIZE == 10_000


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("GLISK_NFT_CONTRACT_ADDRESS", "0x1234", "GLISK_NFT_CONTRACT_ADDRESS"),
        ("NETWORK", "ROPSTEN", "NETWORK"),
        ("GLISK_PARTITION_SIZE", "0", "GLISK_PARTITION_SIZE"),
        ("WEBHOOK_DUPLICATE_STATUS", "500", "WEBHOOK_DUPLICATE_STATUS"),
        ("DATABASE_URL", "not a url", "DATABASE_URL"),
    ],
)
def test_bad_value_names_the_variable(monkeypatch, name, value, needle) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    message = str(err.value)
    assert needle in message and "\n" not in message


def test_addresses_in_any_case_but_a_wrong_checksum(monkeypatch) -> None:
    for accepted in (ADDR.lower(), "0x" + ADDR[2:].upper(), ADDR):
        monkeypatch.setenv("GLISK_DEFAULT_AUTHOR_WALLET", accepted)
        assert load_settings().default_author_wallet == ADDR.lower()
    typo = ADDR[:-1] + "7"  # one character off: the checksum no longer matches
    monkeypatch.setenv("GLISK_DEFAULT_AUTHOR_WALLET", typo)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert str(err.value) == (
        "GLISK_DEFAULT_AUTHOR_WALLET: mixed-case address with a wrong EIP-55 checksum (a typo?)"
    )


def test_network_case_insensitive_and_chain_ids(monkeypatch) -> None:
    monkeypatch.setenv("NETWORK", "base_mainnet")
    assert load_settings().NETWORK is Network.BASE_MAINNET
    assert load_settings().expected_chain_id == 8453


def test_rpc_url_built_from_key_and_never_echoed(monkeypatch) -> None:
    monkeypatch.setenv("ALCHEMY_API_KEY", "sekrit-key-123")
    s = load_settings()
    assert s.rpc_url() == "https://base-sepolia.g.alchemy.com/v2/sekrit-key-123"
    assert "sekrit" not in repr(s) and "sekrit" not in str(s.model_dump())


def test_missing_secret_where_needed(monkeypatch) -> None:
    s = load_settings()
    with pytest.raises(ConfigError, match="ALCHEMY_WEBHOOK_SECRET"):
        s.require("ALCHEMY_WEBHOOK_SECRET")
    with pytest.raises(ConfigError, match="RPC_URL or ALCHEMY_API_KEY"):
        s.rpc_url()
    monkeypatch.setenv("ALCHEMY_WEBHOOK_SECRET", " k1 , k2,")
    assert load_settings().webhook_signing_keys == (b"k1", b"k2")


def test_bad_secret_value_is_not_echoed(monkeypatch) -> None:
    monkeypatch.setenv("GLISK_DEFAULT_AUTHOR_WALLET", "hunter2-password")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "hunter2" not in str(err.value)


def test_env_example_loads_as_is(monkeypatch, tmp_path) -> None:
    # copying .env.example to .env (as README says) must give a working configuration
    example = (Path(__file__).resolve().parent.parent / ".env.example").read_text()
    (tmp_path / ".env").write_text(example)
    s = load_settings()
    assert s.GLISK_CONFIRMATIONS is None and s.NETWORK is Network.BASE_SEPOLIA


def test_the_code_location_refuses_placeholders_on_base_only() -> None:
    from glisk_pipeline.defs.resources import ChainResource

    contract = "0x" + "11" * 20
    chain = ChainResource(network="BASE_MAINNET", contract_address=contract, start_block=0)
    with pytest.raises(ConfigError, match=r"^GLISK_START_BLOCK: 0 on BASE_MAINNET"):
        chain.settings()
    zero = ChainResource(network="BASE_SEPOLIA", contract_address="0x" + "00" * 20, start_block=5)
    with pytest.raises(ConfigError, match=r"^GLISK_NFT_CONTRACT_ADDRESS: the zero address"):
        zero.settings()
    local = ChainResource(network="LOCAL", contract_address="0x" + "00" * 20, start_block=0)
    assert local.settings().start_block == 0
    assert ChainResource(network="BASE_MAINNET", start_block=7).settings().start_block == 7
