"""Alchemy's `X-Alchemy-Signature`: hex HMAC-SHA256 of the raw body with the signing key.

Checked before anything else touches the body: this is the path an attacker controls, so
it is a few microseconds and never parses JSON or opens a database connection.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

SIGNATURE_HEADER = "x-alchemy-signature"
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_DIGEST_HEX_LEN = 64  # SHA-256


def sign(body: bytes, key: bytes | str) -> str:
    """The signature Alchemy would send for `body` (used by tests and the replay tool)."""
    key = key.encode() if isinstance(key, str) else key
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(body: bytes, signature: str | None, keys: Iterable[bytes]) -> bool:
    """True when `signature` is the HMAC of `body` under any one of `keys` (rotation, or
    several webhooks on one endpoint). compare_digest keeps each comparison constant-time;
    stopping at the first match reveals only which key slot matched, not a key byte."""
    if not signature or len(signature) != _DIGEST_HEX_LEN or not _HEX_DIGITS.issuperset(signature):
        return False
    given = signature.lower().encode()
    return any(
        hmac.compare_digest(hmac.new(key, body, hashlib.sha256).hexdigest().encode(), given)
        for key in keys
    )
