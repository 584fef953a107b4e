"""Who may hold a connection to this worker: decided when a connection is accepted, before a
byte of it is read, and again when a trusted proxy names its client in a request head.

Three rules, in this order:
- **Source allowlist** (WEBHOOK_ALLOWED_SOURCES, empty = everyone): any other source is
  closed at once.
- **Per-client cap** (WEBHOOK_MAX_CONNECTIONS_PER_CLIENT): one address (an IPv6 client's
  /64, which one host can fill with addresses) holds at most this many connections; the
  next is closed at once and takes nobody's slot.
- **Global cap** (WEBHOOK_MAX_CONNECTIONS): when it is full, the connection that has waited
  longest without a complete request (idle keep-alive, or a head or body still arriving)
  is shed to admit the newcomer. A request being processed is never shed; only when every
  slot holds one is the newcomer closed.

Behind a proxy every connection comes from the proxy's address, so for a source in
WEBHOOK_TRUSTED_PROXIES the client is taken from X-Forwarded-For, and only once its head
has been parsed: the allowlist and the per-client cap then apply to that client, for the
time its request is in flight (from its parsed head, or for a pipelined request from its
turn, to its answer sent). The proxy's connection itself is charged to no client, so the
global cap and shedding bound it.

Everything here is dictionary and ordered-dictionary work, O(1) per connection; address
parsing is cached per address.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Protocol

from glisk_pipeline.settings import IPNetwork, Settings

Refusal = Literal["not_allowed", "client_cap", "busy"]
IPV6_CLIENT_PREFIX = 64  # what one IPv6 host (or customer) is given, as a rule
XFF = b"x-forwarded-for"


class Member(Protocol):
    """A connection as the book sees it (webhook_service.protocol implements it)."""

    def can_shed(self) -> bool: ...

    def shed(self) -> None: ...


@dataclass(frozen=True)
class SourcePolicy:
    allowed: tuple[IPNetwork, ...] = ()  # empty: everyone
    trusted_proxies: tuple[IPNetwork, ...] = ()

    def __post_init__(self) -> None:
        # One parse per distinct address, not one per connection (bounded: a flood from
        # many addresses evicts old entries rather than growing the cache).
        object.__setattr__(self, "_classify", lru_cache(maxsize=4096)(self._classify_uncached))

    def classify(self, host: str) -> tuple[str, bool, bool]:
        """(client key, allowed, is a trusted proxy) for a source address."""
        return self._classify(host)  # type: ignore[attr-defined, no-any-return]

    def _classify_uncached(self, host: str) -> tuple[str, bool, bool]:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:  # not an address (e.g. garbage in X-Forwarded-For)
            return host[:64], not self.allowed, False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        key = str(ip)
        if isinstance(ip, ipaddress.IPv6Address):
            key = str(ipaddress.IPv6Network((ip, IPV6_CLIENT_PREFIX), strict=False))
        allowed = not self.allowed or any(ip in net for net in self.allowed)
        return key, allowed, any(ip in net for net in self.trusted_proxies)

    def forwarded_client(self, headers: Iterable[tuple[bytes, bytes]], proxy: str) -> str:
        """The client a trusted proxy names: the rightmost X-Forwarded-For entry that is not
        itself a trusted proxy (each proxy appends the address it saw, so entries to the
        left of it are whatever the client chose to send). No header: the proxy itself."""
        entries: list[str] = []
        for name, value in headers:
            if name.lower() == XFF:
                entries += value.decode("latin-1").split(",")
        for entry in reversed(entries):
            host = entry.strip().removeprefix("[").removesuffix("]")
            if not self.classify(host)[2]:
                return host
        return entries[0].strip() if entries else proxy


class ConnectionBook:
    """One worker's admitted connections: how many, per client, and which may be shed
    (oldest first: ordered by when each last started waiting for bytes)."""

    def __init__(self, max_connections: int, max_per_client: int) -> None:
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self.members: dict[Member, str | None] = {}  # member -> the client it is charged to
        self.per_client: dict[str, int] = {}
        self.sheddable: OrderedDict[Member, None] = OrderedDict()

    def admit(self, member: Member, client: str | None) -> Refusal | None:
        """Take `member` in, charged to `client` (None: no client yet), shedding the oldest
        idle or half-sent connection if the worker is full; or say why not."""
        if client is not None and self.per_client.get(client, 0) >= self.max_per_client:
            return "client_cap"
        if len(self.members) >= self.max_connections and not self._shed_one():
            return "busy"
        self.members[member] = None
        self.charge(member, client)
        self.sheddable[member] = None  # a new connection waits for its head
        return None

    def charge(self, member: Member, client: str | None) -> bool:
        """Charge `member` to `client` (None: to nobody). False if that client is at its
        cap (the member stays charged to nobody)."""
        self._discharge(member)
        if client is None:
            return True
        count = self.per_client.get(client, 0)
        if count >= self.max_per_client:
            return False
        self.per_client[client] = count + 1
        self.members[member] = client
        return True

    def waiting(self, member: Member, sheddable: bool) -> None:
        """The member started waiting for bytes (sheddable, now the newest such) or has a
        complete request in flight (not sheddable)."""
        if member not in self.members:
            return
        if sheddable:
            self.sheddable[member] = None
            self.sheddable.move_to_end(member)
        else:
            self.sheddable.pop(member, None)

    def release(self, member: Member) -> None:
        if member in self.members:
            self._discharge(member)
            del self.members[member]
            self.sheddable.pop(member, None)

    def _discharge(self, member: Member) -> None:
        client = self.members.get(member)
        if client is not None:
            left = self.per_client[client] - 1
            if left:
                self.per_client[client] = left
            else:
                del self.per_client[client]
            self.members[member] = None

    def _shed_one(self) -> bool:
        while self.sheddable:
            victim, _ = self.sheddable.popitem(last=False)
            if victim.can_shed():
                self.release(victim)
                victim.shed()
                return True
        return False


def policy_from(settings: Settings) -> SourcePolicy:
    return SourcePolicy(settings.webhook_allowed_sources, settings.webhook_trusted_proxies)
