"""The accept-time rules as pure functions: who a source is, whom a proxy names, and what a
bad access list says (the sockets side is in test_client_limits.py)."""

from __future__ import annotations

import ipaddress

import pytest

from glisk_pipeline.settings import ConfigError, load_settings
from webhook_service.admission import ConnectionBook, SourcePolicy

PROXIES = (ipaddress.ip_network("10.0.0.0/8"),)


def test_an_ipv6_client_is_its_64_and_a_mapped_ipv4_is_the_ipv4() -> None:
    policy = SourcePolicy(allowed=(ipaddress.ip_network("2001:db8:1::/48"),))
    key_a, allowed_a, _ = policy.classify("2001:db8:1:2::1")
    key_b, _, _ = policy.classify("2001:db8:1:2:ffff::9")  # same /64: same client
    assert key_a == key_b == "2001:db8:1:2::/64" and allowed_a
    assert policy.classify("::ffff:192.0.2.7")[:2] == ("192.0.2.7", False)
    assert policy.classify("not an address")[1] is False  # never allowed by a list


def test_the_forwarded_client_is_the_rightmost_entry_no_proxy_of_ours_added() -> None:
    policy = SourcePolicy(trusted_proxies=PROXIES)
    # the client wrote "1.1.1.1", the edge proxy appended what it saw, an inner proxy too
    headers = [(b"X-Forwarded-For", b"1.1.1.1, 203.0.113.5"), (b"x-forwarded-for", b"10.1.2.3")]
    assert policy.forwarded_client(headers, "10.9.9.9") == "203.0.113.5"
    assert policy.forwarded_client([], "10.9.9.9") == "10.9.9.9"  # no header: the proxy
    assert policy.forwarded_client([(b"x-forwarded-for", b"[2001:db8::1]")], "") == "2001:db8::1"


class Member:
    def __init__(self, sheddable: bool = True) -> None:
        self.sheddable, self.was_shed = sheddable, False

    def can_shed(self) -> bool:
        return self.sheddable

    def shed(self) -> None:
        self.was_shed = True


def test_the_book_sheds_the_longest_waiting_and_never_a_busy_one() -> None:
    book = ConnectionBook(max_connections=3, max_per_client=2)
    busy, old, new = Member(), Member(), Member()
    for member in (busy, old, new):
        assert book.admit(member, None) is None
    book.waiting(busy, False)  # its request is being processed
    book.waiting(old, True)  # it started waiting again: `new` has waited longest
    assert book.admit(Member(), None) is None and new.was_shed and not old.was_shed
    first, second = Member(), Member()
    assert book.admit(first, "a") is None and old.was_shed
    assert book.admit(second, "a") is None  # sheds the unnamed newcomer
    assert book.admit(Member(), "a") == "client_cap"  # "a" holds 2 already: nobody shed
    assert not (first.was_shed or second.was_shed)
    book.waiting(first, False)
    book.waiting(second, False)
    assert book.admit(Member(), None) == "busy"  # every slot is processing a request
    assert not (busy.was_shed or first.was_shed or second.was_shed)
    book.release(first)
    assert book.admit(Member(), "a") is None  # its slot and its client's count are free


@pytest.mark.parametrize("name", ["WEBHOOK_ALLOWED_SOURCES", "WEBHOOK_TRUSTED_PROXIES"])
def test_a_bad_access_list_names_the_variable_and_the_entry(name: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{name}: '10\.0\.0\.1/8' is not an address or CIDR"):
        load_settings(**{name: "10.0.0.0/8, 10.0.0.1/8"})
    assert load_settings(**{name: " 54.236.136.17 ,,2001:db8::/32"}).model_dump()[name] == (
        "54.236.136.17/32,2001:db8::/32"
    )
