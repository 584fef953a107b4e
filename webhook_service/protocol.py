"""The HTTP/1.1 protocol the sidecar serves with: uvicorn's h11 implementation plus a read
deadline, because the endpoint is public and every byte before the signature check comes
from an unauthenticated sender.

Why h11 and not httptools (uvicorn's default when installed): httptools enforces no limit
on the request head (a 64 MiB header is read whole into memory), while h11 refuses a head
that grows past `h11_max_incomplete_event_size` (WEBHOOK_MAX_HEADER_BYTES): uvicorn answers
400 and closes. Neither bounds the time a request may take to arrive: uvicorn only closes
idle keep-alive connections (`timeout_keep_alive`), and a data byte cancels that timer. So
this protocol keeps one deadline per phase: the head must be complete within
WEBHOOK_READ_TIMEOUT_SECONDS of the connection opening (or of the previous response), and
the body within the same time of its head. A late request is answered 408 and closed; the
application sees a disconnect and frees what it buffered. And a client that stops reading
its answers (the transport's buffer full: writing paused) must read again within the same
time, or the connection is dropped: without that, pipelined requests whose answers it
never read held a connection, and a slot of WEBHOOK_MAX_CONNECTIONS, for as long as it
liked (measured: 3,000 pipelined GETs, the client silent for 4 read timeouts, all kept).

Which connections are admitted at all (source allowlist, per-client cap, shedding the
oldest idle or half-sent connection when the worker is full) is decided when a connection
is accepted, before a byte is read: webhook_service/admission.py. uvicorn's own
`limit_concurrency` is not used: it counts idle and half-sent connections like busy ones and
answers the newcomer 503 only after reading its head, so one client holding connections
open shut everyone else out.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import sys
from collections.abc import Callable
from functools import cache
from typing import Any, Literal

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from glisk_pipeline.settings import Settings, load_settings
from webhook_service import logs, metrics
from webhook_service.admission import ConnectionBook, Refusal, SourcePolicy, policy_from
from webhook_service.logs import ThrottledUvicornWarnings

Phase = Literal["head", "body", "answer"] | None
WAITING_FOR_BYTES = ("head", "body")  # the phases in which a connection may be shed


def _plain_response(status: bytes, text: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\n"
        b"content-type: text/plain; charset=utf-8\r\n"
        b"connection: close\r\n"
        b"content-length: %d\r\n\r\n" % len(text) + text
    )


TIMEOUT_RESPONSE = _plain_response(b"408 Request Timeout", b"request read timed out\r\n")
SHED_RESPONSE = _plain_response(b"503 Service Unavailable", b"server full, retry\r\n")


M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
MMAP_THRESHOLD_BYTES = 128 * 1024


def return_large_buffers_to_the_os() -> None:
    """Fix glibc's mmap threshold at its 128 KiB default. Left dynamic, glibc raises it to
    the size of every large block freed, so after one flood of 1 MiB bodies the next ones
    come from the heap, which is never given back: 220 stalled 1 MiB bodies left the
    worker at ~290 MiB RSS after they were closed (measured). With the threshold fixed,
    each large body buffer is its own mapping and is unmapped when freed."""
    if not sys.platform.startswith("linux"):
        return
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        libc = ctypes.CDLL(libc_name)
        if hasattr(libc, "mallopt"):
            libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


@cache
def settings() -> Settings:
    # uvicorn builds the protocol from an import string in every worker, so the values
    # come from the settings (already validated by `python -m webhook_service`).
    return load_settings()


def read_timeout_seconds() -> float:
    return settings().WEBHOOK_READ_TIMEOUT_SECONDS


@cache
def connection_book() -> ConnectionBook:
    """This worker's admitted connections (one event loop per worker: no locking)."""
    config = settings()
    return ConnectionBook(config.WEBHOOK_MAX_CONNECTIONS, config.WEBHOOK_MAX_CONNECTIONS_PER_CLIENT)


@cache
def source_policy() -> SourcePolicy:
    return policy_from(settings())


class ScreenedConnection(h11.Connection):
    """h11 with a look at each request head before uvicorn acts on it: a trusted proxy's
    request is admitted or refused by the client its X-Forwarded-For names. A refused
    request reads as NEED_DATA to uvicorn; the screen has already dropped the connection."""

    def __init__(
        self, screen: Callable[[h11.Request], bool], max_incomplete_event_size: int
    ) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_incomplete_event_size)
        self._screen = screen

    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        event = super().next_event()
        if isinstance(event, h11.Request) and not self._screen(event):
            return h11.NEED_DATA
        return event


# uvicorn imports this module in every worker process before serving (after it set up
# its logging, so the filter stays).
return_large_buffers_to_the_os()
logging.getLogger("uvicorn.error").addFilter(
    ThrottledUvicornWarnings(settings().WEBHOOK_REJECTED_LOG_SECONDS)
)


class DeadlineH11Protocol(H11Protocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.read_timeout = read_timeout_seconds()
        self.book = connection_book()
        self.policy = source_policy()
        self._phase: Phase = None
        self._deadline: asyncio.TimerHandle | None = None
        self._admitted = False
        self._via_proxy = False
        self._peer = ""
        if self.policy.trusted_proxies:
            # the same head-size limit uvicorn gave its own h11 connection
            limit = self.conn._max_incomplete_event_size
            self.conn = ScreenedConnection(self._screen_request, limit)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        peer = transport.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) and peer else None
        self._peer = host or ""
        refusal: Refusal | None = None
        if host is not None:
            client, allowed, self._via_proxy = self.policy.classify(host)
            if self._via_proxy:
                refusal = self.book.admit(self, None)  # the client comes with each head
            else:
                refusal = self.book.admit(self, client) if allowed else "not_allowed"
        else:  # not an IP socket (a Unix socket): no address to judge
            refusal = self.book.admit(self, None)
        if refusal is not None:
            # Never registered with uvicorn: closed before a byte is read or written.
            transport.abort()
            _count_refusal(refusal, host)
            return
        self._admitted = True
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        if self._via_proxy:
            self.book.charge(self, None)  # the proxy's next request may be anyone's
        super().on_response_complete()
        self._watch()  # a kept-alive connection now waits for the next head

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._admitted:
            return  # refused in connection_made: uvicorn never saw it
        self._arm(None)
        self.book.release(self)
        super().connection_lost(exc)

    def _screen_request(self, request: h11.Request) -> bool:
        """A request head arrived: if it came through a trusted proxy, judge the client it
        names (allowlist, per-client cap) and charge it until the answer is sent."""
        if not self._via_proxy:
            return True
        host = self.policy.forwarded_client(request.headers, self._peer)
        client, allowed, _ = self.policy.classify(host)
        refusal: Refusal | None = None
        if not allowed:
            refusal = "not_allowed"
        elif not self.book.charge(self, client):
            refusal = "client_cap"
        if refusal is not None:
            self._arm(None)
            self.transport.abort()
            _count_refusal(refusal, host)
            return False
        self.client = (host, 0)  # the request's scope names the real client
        return True

    # --- shedding (called by the book when the worker is full) --------------------------

    def can_shed(self) -> bool:
        if self._phase not in WAITING_FOR_BYTES or self.transport.is_closing():
            return False
        cycle = self.cycle  # an answer already being written is left to finish
        return cycle is None or not cycle.response_started or cycle.response_complete

    def shed(self) -> None:
        state = "body" if self._phase == "body" else "head" if self._partial_head() else "idle"
        metrics.CONNECTIONS_SHED.labels(state).inc()
        logs.unauthenticated.warning("connection shed", outcome="connection_shed", state=state)
        self._hang_up(SHED_RESPONSE)

    def _partial_head(self) -> bool:
        return bool(self.conn.trailing_data[0])

    def pause_writing(self) -> None:
        super().pause_writing()
        self._arm("answer")

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._phase == "answer":
            self._arm(None)
            self._watch()

    def _watch(self) -> None:
        """Arm a fresh deadline when the phase changes; leave it running within a phase,
        so that trickling bytes cannot extend it."""
        if self._phase == "answer":  # only reading our answers ends it (resume_writing)
            return
        state = self.conn.their_state
        phase: Phase = "head" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None
        if self.transport.is_closing():
            phase = None
        if phase != self._phase:
            self._arm(phase)

    def _arm(self, phase: Phase) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._phase = phase
        self.book.waiting(self, phase in WAITING_FOR_BYTES)
        if phase is not None:
            self._deadline = self.loop.call_later(self.read_timeout, self._expired)

    def _expired(self) -> None:
        self._deadline = None
        if self._phase == "answer":
            # Nothing more can be written, and close() would wait to flush the buffer.
            self._arm(None)
            self.transport.abort()
            return
        self._hang_up(TIMEOUT_RESPONSE)

    def _hang_up(self, answer: bytes) -> None:
        """Close a connection that is waiting for bytes, saying why if a request had begun
        (an idle connection just closes)."""
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if self._phase == "head":
            if self._partial_head():
                self.transport.write(answer)
        elif cycle is not None and not cycle.response_started:
            self.transport.write(answer)
        if self._phase == "body" and cycle is not None and not cycle.response_complete:
            # The application is waiting for body bytes: it gets a disconnect now, and
            # any answer it still sends is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        self._arm(None)
        self.transport.close()


def _count_refusal(reason: Refusal, source: str | None) -> None:
    metrics.CONNECTIONS_REFUSED.labels(reason).inc()
    logs.unauthenticated.warning("connection refused", outcome=f"refused_{reason}", source=source)
