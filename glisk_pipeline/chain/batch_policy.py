"""What one JSON-RPC endpoint accepts as a batch, learned from its refusals and kept for
the life of the process (every client of the same URL shares it).

An endpoint starts trusted up to DEFAULT_BATCH_LIMIT calls a batch (Erigon's and
Nethermind's default limit is 100; geth takes 1,000, Ankr 1,000, NodeReal 500). Each
refusal (glisk_pipeline/chain/provider_errors.py, `batch_refusal`) only ever narrows the policy:
a stated limit replaces the current one, a refusal that states none halves it, methods it
refuses inside a batch go singly from then on, and "no batches" sends everything singly.
So learning ends after a few refusals, and each change is logged once, the endpoint
redacted. RPC_BATCH_LIMIT sets the starting limit instead (0: never batch; 500 for an endpoint known
to take 500); refusals still narrow it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from glisk_pipeline.chain.provider_errors import BatchRefusal

log = logging.getLogger(__name__)

DEFAULT_BATCH_LIMIT = 100


@dataclass(slots=True)
class BatchPolicy:
    endpoint: str  # redacted: what logs may show
    limit: int = DEFAULT_BATCH_LIMIT  # calls per batch; 0 or 1: every call on its own
    singles: set[str] = field(default_factory=set)  # methods sent only as single calls
    refusals: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def batchable(self, methods: list[str]) -> bool:
        """Whether these calls may go out as one batch."""
        return self.limit >= len(methods) > 1 and not self.singles.intersection(methods)

    def learn(self, refusal: BatchRefusal, sent: int) -> None:
        with self._lock:
            self.refusals += 1
            if refusal.none:
                self.limit = 0
            elif refusal.methods:
                self.singles.update(refusal.methods)
            elif refusal.limit is not None:
                self.limit = min(self.limit, refusal.limit)
            else:
                self.limit = min(self.limit, sent // 2)
            log.warning("%s refused a JSON-RPC batch (%s): %s", self.endpoint, refusal.message,
                        self.describe())  # fmt: skip

    def shrink_to(self, served: int) -> None:
        """A batch's response was cut after `served` items: batches stay below that."""
        with self._lock:
            if served < self.limit:
                self.limit = max(1, served)
                log.warning("%s cut a JSON-RPC batch's response: %s", self.endpoint,
                            self.describe())  # fmt: skip

    def describe(self) -> str:
        if self.limit <= 1:
            return "every call is sent on its own"
        alone = f"; sent singly: {', '.join(sorted(self.singles))}" if self.singles else ""
        return f"batches of at most {self.limit} calls{alone}"


_POLICIES: dict[tuple[str, int | None], BatchPolicy] = {}
_REGISTRY = threading.Lock()


def policy_for(url: str, endpoint: str, forced_limit: int | None) -> BatchPolicy:
    """The process's policy for `url` as configured (keyed by the full URL, never logged,
    and RPC_BATCH_LIMIT: clients configured differently do not share a policy)."""
    with _REGISTRY:
        policy = _POLICIES.get((url, forced_limit))
        if policy is None:
            start = DEFAULT_BATCH_LIMIT if forced_limit is None else forced_limit
            policy = _POLICIES[(url, forced_limit)] = BatchPolicy(endpoint, limit=start)
        return policy
