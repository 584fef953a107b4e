"""Signed Alchemy GraphQL deliveries, prepared before a run (signing costs nothing during
it). Shaped exactly as devtools.replay builds them from a chain (Alchemy's documented
Custom Webhook GraphQL delivery); the logs are synthetic so that tens of thousands of
distinct blocks and logs cost no mining: each delivery is its own block, token ids
contiguous and unique. Two workloads: HEAVY (1-3 BatchMinted logs of 1-50 tokens each,
~50 token rows a delivery) and SMALL (1 log of 1-3 tokens: a real Glisk mint)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from bench.loadgen import Request
from devtools.replay import delivery, signed
from glisk_pipeline.chain.decoder import BATCH_MINTED_TOPIC0

KEY = "whsec_bench_0123456789abcdef"


def _word(value: int) -> str:
    return f"{value:064x}"


@dataclass
class Factory:
    contract: str
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    next_block: int = 1_000_000
    next_token: int = 1
    logs_per_delivery: tuple[int, int] = (1, 3)
    tokens_per_log: tuple[int, int] = (1, 50)
    logs: set[tuple[str, int]] = field(default_factory=set)  # every log generated
    tokens: int = 0

    def make(self, n: int) -> list[Request]:
        out = []
        for _ in range(n):
            self.next_block += 1
            block = {
                "number": self.next_block,
                "hash": "0x" + self.rng.randbytes(32).hex(),
                "timestamp": 1_700_000_000 + 2 * self.next_block,
            }
            gql_logs = []
            for index in range(self.rng.randint(*self.logs_per_delivery)):
                quantity = self.rng.randint(*self.tokens_per_log)
                tx = "0x" + self.rng.randbytes(32).hex()
                minter, author = self.rng.randbytes(20).hex(), self.rng.randbytes(20).hex()
                gql_logs.append(
                    {
                        "account": {"address": self.contract},
                        "topics": [
                            BATCH_MINTED_TOPIC0,
                            "0x" + minter.rjust(64, "0"),
                            "0x" + author.rjust(64, "0"),
                            "0x" + _word(self.next_token),
                        ],
                        "data": "0x" + _word(quantity) + _word(quantity * 10**15),
                        "index": index,
                        "transaction": {
                            "hash": tx,
                            "index": index,
                            "from": {"address": "0x" + minter},
                            "to": {"address": self.contract},
                            "status": 1,
                        },
                    }
                )
                self.logs.add((tx, index))
                self.next_token += quantity
                self.tokens += quantity
            body, headers = signed(delivery(block, gql_logs), KEY)
            out.append((body, headers["x-alchemy-signature"].encode()))
        return out


WORKLOADS = {
    "small": {"logs_per_delivery": (1, 1), "tokens_per_log": (1, 3)},
    "heavy": {"logs_per_delivery": (1, 3), "tokens_per_log": (1, 50)},
}


def forged(requests: list[Request]) -> list[Request]:
    """The same bodies with a wrong (well-formed) signature: the 401 path."""
    return [(body, b"0" * 64) for body, _ in requests]
