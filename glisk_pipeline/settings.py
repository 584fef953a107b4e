"""Settings for every face of glisk-pipeline, read from the environment and an optional `.env`.

One place knows every variable. A bad value fails at start-up with one line naming the
variable (`ConfigError`), never later inside a request. Secrets are `SecretStr` and are
never echoed, not even in error messages.
"""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from glisk_pipeline.chain.keccak import has_valid_checksum

ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
ZERO_ADDRESS = "0x" + "0" * 40
DEFAULT_SQLITE_PATH = Path(".glisk") / "glisk.db"
DATABASE_BACKENDS = ("postgresql", "sqlite")
# Connections per process (each uvicorn worker, each Dagster run, the CLI): a webhook
# delivery holds one for ~1-5 ms and a run uses one at a time, so 5 (+5 in bursts) carries
# hundreds of deliveries/s per worker while keeping replicas x workers x 10 within the
# server's max_connections (PostgreSQL's default: 100).
DEFAULT_POOL_SIZE = 5
DEFAULT_MAX_OVERFLOW = 5


class ConfigError(ValueError):
    """A configuration variable is missing or malformed; the message names it."""


class Network(StrEnum):
    BASE_SEPOLIA = "BASE_SEPOLIA"
    BASE_MAINNET = "BASE_MAINNET"
    LOCAL = "LOCAL"


CHAIN_IDS: dict[Network, int | None] = {
    Network.BASE_SEPOLIA: 84532,
    Network.BASE_MAINNET: 8453,
    Network.LOCAL: None,  # any chain id (anvil: 31337)
}
# The public networks, where a zero contract address or start block is a placeholder.
BASE_NETWORKS = frozenset({Network.BASE_SEPOLIA, Network.BASE_MAINNET})
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
ALCHEMY_HOSTS = {
    Network.BASE_SEPOLIA: "base-sepolia.g.alchemy.com",
    Network.BASE_MAINNET: "base-mainnet.g.alchemy.com",
}


def normalize_address(value: str) -> str:
    """Lowercase 0x-hex, the one form every writer stores. A mixed-case address must carry
    a valid EIP-55 checksum (keccak.has_valid_checksum): one mistyped character in a pasted
    address then fails here, instead of filtering a contract that does not exist."""
    if not isinstance(value, str) or not ADDRESS_RE.match(value.strip()):
        raise ValueError("must be a 0x-prefixed 20-byte hex address")
    address = value.strip()
    # all-lowercase or all-uppercase carries no checksum; mixed case is one (EIP-55)
    digits = address[2:]
    mixed_case = digits not in (digits.lower(), digits.upper())
    if mixed_case and not has_valid_checksum(address):
        raise ValueError("mixed-case address with a wrong EIP-55 checksum (a typo?)")
    return address.lower()


def parse_cidr_list(value: str) -> tuple[IPNetwork, ...]:
    """`10.0.0.0/8, 54.236.136.17` -> networks (a bare address is a /32 or /128). Host bits
    set under the mask (`10.0.0.1/8`) are refused: in an access list that is a typo."""
    networks = []
    for entry in (e.strip() for e in value.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry))
        except ValueError as exc:
            raise ValueError(f"{entry!r} is not an address or CIDR ({exc})") from None
    return tuple(networks)


_SUPPLY_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\(\)\s*(?:\+\s*(\d{1,6}))?\s*$")


def parse_supply_function(value: str) -> tuple[str, int] | None:
    """("name()", constant) of GLISK_SUPPLY_FUNCTION, e.g. "totalSupply() + 1" ->
    ("totalSupply()", 1); None when it is not of that form."""
    match = _SUPPLY_RE.match(value)
    if match is None:
        return None
    return f"{match[1]}()", int(match[2] or 0)


def normalize_database_url(url: str) -> str:
    """Pick psycopg 3 for the app's PostgreSQL engine; leave other URLs alone."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=True,
        # `GLISK_CONFIRMATIONS=` (as in .env.example) means unset, not a bad integer
        env_parse_none_str="",
    )

    # Seed variables.
    ALCHEMY_API_KEY: SecretStr | None = None
    ALCHEMY_WEBHOOK_SECRET: SecretStr | None = None
    GLISK_NFT_CONTRACT_ADDRESS: str | None = None
    NETWORK: Network = Network.BASE_SEPOLIA
    GLISK_DEFAULT_AUTHOR_WALLET: str | None = None

    # Storage and chain access.
    DATABASE_URL: str = f"sqlite:///{DEFAULT_SQLITE_PATH}"
    DATABASE_POOL_SIZE: int = Field(default=DEFAULT_POOL_SIZE, ge=1)
    DATABASE_MAX_OVERFLOW: int = Field(default=DEFAULT_MAX_OVERFLOW, ge=0)
    RPC_URL: SecretStr | None = None  # may embed a provider key: treated as a secret
    GLISK_START_BLOCK: int = Field(default=0, ge=0)
    # On Base (mainnet or Sepolia) a start block of 0 means indexing from genesis, almost
    # always a forgotten setting: refused unless this confirms it.
    GLISK_ALLOW_START_BLOCK_ZERO: bool = False
    GLISK_PARTITION_SIZE: int = Field(default=10_000, ge=1)
    GLISK_CONFIRMATIONS: int | None = Field(default=None, ge=0)
    RPC_INITIAL_BLOCK_RANGE: int = Field(default=1_000, ge=1)
    RPC_MAX_BLOCK_RANGE: int = Field(default=1_000_000, ge=1)
    RPC_TIMEOUT_SECONDS: float = Field(default=30.0, gt=0)
    RPC_MAX_ATTEMPTS: int = Field(default=6, ge=1)
    # Calls per JSON-RPC batch. Unset: start at 100 (Erigon's and Nethermind's default)
    # and learn the endpoint's own limit from its refusals; 0: never batch.
    RPC_BATCH_LIMIT: int | None = Field(default=None, ge=0)

    # Dagster pipeline (the partition size above is shared with it).
    # Partitions per run of a UI backfill (BackfillPolicy.multi_run) and of the sensor's
    # catch-up runs: 50 windows of 10,000 blocks is ~11 days of Base per run, a year of
    # catch-up ~32 runs.
    GLISK_PARTITIONS_PER_RUN: int = Field(default=50, ge=1)
    # New windows the sensor adds (in runs of the above) per tick, so a first tick on a
    # long history cannot run into the 60 s sensor timeout; the cursor resumes next tick.
    GLISK_SENSOR_MAX_PARTITIONS_PER_TICK: int = Field(default=100, ge=1)

    # Operating it: thresholds of `glisk status` (exit 3 past them), the freshness check
    # and the silence sensor.
    # final block - last_processed_block: the sensor adds a window once it is complete, so
    # a healthy index trails by up to one window plus its run; warn past two windows, error
    # past a day of Base (43,200 blocks at one every 2 s).
    GLISK_LAG_WARN_BLOCKS: int = Field(default=20_000, ge=0)
    GLISK_LAG_ERROR_BLOCKS: int = Field(default=43_200, ge=0)
    # No webhook delivery for this long while the chain advanced: the webhook is silent
    # (Alchemy pauses an endpoint after repeated failures and never replays the gap).
    GLISK_WEBHOOK_SILENCE_SECONDS: int = Field(default=300, ge=1)
    # webhook_blocks rows more than this many blocks below the checkpoint are pruned: a final
    # block's delivery can no longer change anything (the reconcile decides it).
    GLISK_WEBHOOK_BLOCKS_RETENTION: int = Field(default=1_000, ge=0)
    # The contract's own counter that the supply proof compares the tables with: the next
    # token id, as a no-argument view plus an optional constant. GliskNFT (ERC721Enumerable,
    # ids from 1, no burn) has `nextTokenId()`; `totalSupply() + 1` is the same number.
    GLISK_SUPPLY_FUNCTION: str = "nextTokenId()"

    # Webhook sidecar.
    WEBHOOK_DUPLICATE_STATUS: int = 409
    WEBHOOK_MAX_BODY_BYTES: int = Field(default=1024 * 1024, ge=1024)
    # Loopback by default, so a bare `python -m webhook_service` on a laptop is not exposed
    # to the network; the image, compose file and Kubernetes manifests set 0.0.0.0.
    WEBHOOK_HOST: str = "127.0.0.1"
    WEBHOOK_PORT: int = Field(default=8000, ge=1, le=65535)
    WEBHOOK_WORKERS: int = Field(default=2, ge=1)
    # Hostile-client limits (the endpoint is public): request head size, time for the head
    # and for the body to arrive, idle keep-alive, open connections per worker.
    WEBHOOK_MAX_HEADER_BYTES: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    WEBHOOK_READ_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0, le=60)
    WEBHOOK_KEEP_ALIVE_SECONDS: int = Field(default=5, ge=1, le=300)
    WEBHOOK_MAX_CONNECTIONS: int = Field(default=256, ge=1)
    # Open connections per worker from one client address (an IPv6 client's /64), checked
    # when the connection is accepted, so one client cannot take every slot.
    WEBHOOK_MAX_CONNECTIONS_PER_CLIENT: int = Field(default=32, ge=1)
    # Comma-separated CIDRs. Allowed sources: empty = everyone; else any other source is
    # closed at accept. Trusted proxies: connections from them name the client in
    # X-Forwarded-For, and the allowlist and per-client cap apply to that client.
    WEBHOOK_ALLOWED_SOURCES: str = ""
    WEBHOOK_TRUSTED_PROXIES: str = ""
    # Token rows one delivery may create; a larger one is refused (413) before the database.
    WEBHOOK_MAX_TOKENS_PER_DELIVERY: int = Field(default=10_000, ge=1)
    # Unauthenticated rejections (401, oversized, stalled) log one line per this many
    # seconds per outcome, with a count of those left out; 0 logs each.
    WEBHOOK_REJECTED_LOG_SECONDS: float = Field(default=10.0, ge=0)
    # Every delivery is answered within this many seconds whatever the database does
    # (Alchemy gives up after 5 s and retries; a late 200 would count as a failure).
    WEBHOOK_ANSWER_BUDGET_SECONDS: float = Field(default=4.0, gt=0, lt=5)

    @field_validator("GLISK_NFT_CONTRACT_ADDRESS", "GLISK_DEFAULT_AUTHOR_WALLET")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        return normalize_address(value)

    @field_validator("GLISK_SUPPLY_FUNCTION")
    @classmethod
    def _supply_function(cls, value: str) -> str:
        if parse_supply_function(value) is None:
            raise ValueError(
                "must be a no-argument view, optionally plus a constant, such as "
                "nextTokenId() or totalSupply() + 1"
            )
        return value.strip()

    @field_validator("NETWORK", mode="before")
    @classmethod
    def _network(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("WEBHOOK_DUPLICATE_STATUS")
    @classmethod
    def _duplicate_status(cls, value: int) -> int:
        if value not in (200, 409):
            raise ValueError("must be 409 (the spec) or 200 (never retried by Alchemy)")
        return value

    @field_validator("WEBHOOK_ALLOWED_SOURCES", "WEBHOOK_TRUSTED_PROXIES", mode="before")
    @classmethod
    def _cidr_list(cls, value: object) -> object:
        if value is None:  # `WEBHOOK_ALLOWED_SOURCES=` (as in .env.example): none
            return ""
        if not isinstance(value, str):
            return value  # pydantic then says it must be a string
        return ",".join(str(net) for net in parse_cidr_list(value))

    @field_validator("DATABASE_URL")
    @classmethod
    def _database_url(cls, value: str) -> str:
        # Checked here, so a typo is one line naming the variable rather than a driver
        # traceback later; the messages never repeat the URL (it may hold a password).
        if "://" not in value:
            raise ValueError("must be a SQLAlchemy URL such as postgresql://user@host/db")
        try:
            url = make_url(value)
        except ValueError:
            raise ValueError("malformed URL (is the port a number?)") from None
        if url.get_backend_name() not in DATABASE_BACKENDS:
            raise ValueError(
                f"unsupported database {url.get_backend_name()!r}: use postgresql or sqlite"
            )
        if url.port is not None and not 0 < url.port < 65536:
            raise ValueError("port out of range")
        return normalize_database_url(value)

    @field_validator("RPC_URL")
    @classmethod
    def _rpc_url(cls, value: SecretStr | None) -> SecretStr | None:
        # A secret (it may embed a key): the message never repeats it.
        if value is None or not value.get_secret_value():
            return value
        parts = urlsplit(value.get_secret_value().strip())
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// JSON-RPC URL")
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number in range
        except ValueError:
            raise ValueError("malformed port") from None
        return value

    # --- derived values ------------------------------------------------------------

    @property
    def expected_chain_id(self) -> int | None:
        return CHAIN_IDS[self.NETWORK]

    @cached_property
    def webhook_signing_keys(self) -> tuple[bytes, ...]:
        if self.ALCHEMY_WEBHOOK_SECRET is None:
            return ()
        raw = self.ALCHEMY_WEBHOOK_SECRET.get_secret_value()
        return tuple(k.strip().encode() for k in raw.split(",") if k.strip())

    @property
    def webhook_allowed_sources(self) -> tuple[IPNetwork, ...]:
        return parse_cidr_list(self.WEBHOOK_ALLOWED_SOURCES)

    @property
    def webhook_trusted_proxies(self) -> tuple[IPNetwork, ...]:
        return parse_cidr_list(self.WEBHOOK_TRUSTED_PROXIES)

    def rpc_url(self) -> str:
        """The JSON-RPC endpoint: RPC_URL, else built from NETWORK + ALCHEMY_API_KEY."""
        if self.RPC_URL is not None and self.RPC_URL.get_secret_value():
            return self.RPC_URL.get_secret_value()
        if self.NETWORK is Network.LOCAL:
            raise ConfigError("RPC_URL: required when NETWORK=LOCAL (e.g. http://127.0.0.1:8545)")
        if self.ALCHEMY_API_KEY is None or not self.ALCHEMY_API_KEY.get_secret_value():
            raise ConfigError(f"RPC_URL or ALCHEMY_API_KEY: one is required for {self.NETWORK}")
        key = self.ALCHEMY_API_KEY.get_secret_value()
        return f"https://{ALCHEMY_HOSTS[self.NETWORK]}/v2/{key}"

    def require(self, *names: str) -> None:
        """Fail with a ConfigError naming the first variable in `names` that is unset."""
        for name in names:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if value in (None, ""):
                raise ConfigError(f"{name}: not set (see .env.example, or docs/operations.md)")
        if "ALCHEMY_WEBHOOK_SECRET" in names and not self.webhook_signing_keys:
            raise ConfigError("ALCHEMY_WEBHOOK_SECRET: holds no signing key")

    @property
    def supply_function(self) -> tuple[str, int]:
        """(view signature, constant added): the next token id is view() + constant."""
        parsed = parse_supply_function(self.GLISK_SUPPLY_FUNCTION)
        assert parsed is not None  # validated at start-up
        return parsed

    @property
    def contract_address(self) -> str:
        address = self._required_address("GLISK_NFT_CONTRACT_ADDRESS")
        if address == ZERO_ADDRESS and self.NETWORK in BASE_NETWORKS:
            raise ConfigError(
                f"GLISK_NFT_CONTRACT_ADDRESS: the zero address on {self.NETWORK}, "
                "a placeholder: set the GliskNFT contract's address"
            )
        return address

    @property
    def start_block(self) -> int:
        """GLISK_START_BLOCK, refused at 0 on a Base network unless
        GLISK_ALLOW_START_BLOCK_ZERO confirms it (a local chain may start at 0)."""
        block = self.GLISK_START_BLOCK
        if block == 0 and self.NETWORK in BASE_NETWORKS and not self.GLISK_ALLOW_START_BLOCK_ZERO:
            raise ConfigError(
                f"GLISK_START_BLOCK: 0 on {self.NETWORK} indexes from genesis: set the "
                "contract's deployment block (or GLISK_ALLOW_START_BLOCK_ZERO=true)"
            )
        return block

    @property
    def default_author_wallet(self) -> str:
        return self._required_address("GLISK_DEFAULT_AUTHOR_WALLET")

    def check_placeholders(self) -> None:
        """Raise ConfigError for a placeholder an indexer must not run with on a Base
        network: the zero contract address, or start block 0 (unless confirmed)."""
        if self.GLISK_NFT_CONTRACT_ADDRESS:
            self.contract_address  # noqa: B018 - raises on the zero address
        self.start_block  # noqa: B018 - raises on an unconfirmed 0

    def _required_address(self, name: str) -> str:
        self.require(name)
        value: str = getattr(self, name)  # set: require() raised otherwise
        return value


def load_settings(**overrides: Any) -> Settings:
    """Read settings; turn pydantic's multi-line report into one line naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            # err["msg"] never contains the input value, so secrets cannot leak here.
            problems.append(f"{name}: {err['msg'].removeprefix('Value error, ')}")
        raise ConfigError("; ".join(problems)) from None
