"""The HTTP/1.1 protocol the sidecar serves with: uvicorn's httptools implementation plus a
limit on the request head and read deadlines, because the endpoint is public and every byte
before the signature check comes from an unauthenticated sender.

Why httptools with a head limit of our own, and not uvicorn's h11: httptools (llhttp, in C)
enforces no limit on the request head (a 64 MiB header is read whole into memory), which is
why the sidecar first served with h11, whose `h11_max_incomplete_event_size` refuses a head
that grows past the limit. But h11 parses in Python, and that cost showed in the live path:
the same app under plain httptools (bench.b2_compare, 3 rounds, same run) took 0.76x the
sidecar's CPU per delivery at 2 connections and 0.67x at 32, with 1.18x / 1.45x the
throughput and 0.92x / 0.55x the p99. So this protocol keeps httptools and bounds the head
itself: it counts the bytes that arrive while a head is incomplete (in data_received: llhttp
holds a header value back until it is complete, so on_header would count too late) and
refuses the head with 431 once more than WEBHOOK_MAX_HEADER_BYTES have arrived since it
began, closing the connection: at most one read chunk past the limit is ever held.

Neither parser bounds the time a request may take to arrive: uvicorn only closes idle
keep-alive connections (`timeout_keep_alive`), and a data byte cancels that timer. So this
protocol keeps one deadline per phase: the head must be complete within
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
from functools import cache
from typing import Any, Literal

import httptools
from uvicorn._types import ASGI3Application
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from glisk_pipeline.settings import Settings, load_settings
from webhook_service import logs, metrics
from webhook_service.admission import ConnectionBook, Refusal, SourcePolicy, policy_from
from webhook_service.logs import ThrottledUvicornWarnings

Phase = Literal["head", "body", "answer"] | None
WAITING_FOR_BYTES = ("head", "body")  # the phases in which a connection may be shed
HEAD_END = b"\r\n\r\n"  # llhttp requires CRLF line ends: a head ends at its first blank line
SPLIT_HEAD_ENDS = (HEAD_END[1:], HEAD_END[2:], HEAD_END[3:])  # what may open the next read


def _plain_response(status: bytes, text: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\n"
        b"content-type: text/plain; charset=utf-8\r\n"
        b"connection: close\r\n"
        b"content-length: %d\r\n\r\n" % len(text) + text
    )


TIMEOUT_RESPONSE = _plain_response(b"408 Request Timeout", b"request read timed out\r\n")
SHED_RESPONSE = _plain_response(b"503 Service Unavailable", b"server full, retry\r\n")
HEAD_TOO_LARGE_RESPONSE = _plain_response(
    b"431 Request Header Fields Too Large", b"request head too large\r\n"
)


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


def max_head_bytes() -> int:
    return settings().WEBHOOK_MAX_HEADER_BYTES


@cache
def connection_book() -> ConnectionBook:
    """This worker's admitted connections (one event loop per worker: no locking)."""
    config = settings()
    return ConnectionBook(config.WEBHOOK_MAX_CONNECTIONS, config.WEBHOOK_MAX_CONNECTIONS_PER_CLIENT)


@cache
def source_policy() -> SourcePolicy:
    return policy_from(settings())


# uvicorn imports this module in every worker process before serving (after it set up
# its logging, so the filter stays).
return_large_buffers_to_the_os()
logging.getLogger("uvicorn.error").addFilter(
    ThrottledUvicornWarnings(settings().WEBHOOK_REJECTED_LOG_SECONDS)
)


class _HungUp(Exception):
    """Raised from a parser callback to stop parsing a connection we have closed."""


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.read_timeout = read_timeout_seconds()
        self.max_head_bytes = max_head_bytes()
        self.book = connection_book()
        self.policy = source_policy()
        self._phase: Phase = None
        self._deadline: asyncio.TimerHandle | None = None
        self._admitted = False
        self._via_proxy = False
        self._peer = ""
        # Where the parser is. A request's head has begun (on_message_begin) and is not
        # complete (on_headers_complete); then its body is arriving (on_message_complete
        # ends it). With pipelining the parser may be a request ahead of the application.
        self._in_head = False
        self._in_body = False
        self._head_bytes = 0  # bytes arrived since the incomplete head began
        # Within one data_received: did a head begin in it, and how many body bytes did the
        # current request (then, at the next head: the previous one) have in it.
        self._head_began = False
        self._chunk_body = 0
        self._body_before_head = 0
        self._chunked = False

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
        """uvicorn's, plus the head limit and the deadlines. The head is judged after the
        parser has taken the whole chunk, and only if a head is then still incomplete: a
        chunk that ends a head and carries its body (or further requests) is not a long
        head."""
        self._unset_keepalive_if_required()
        self._head_began = False
        self._chunk_body = 0
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
                return
            self._unsupported_upgrade_warning()
        except httptools.HttpParserError:
            if self.transport.is_closing():
                return  # we closed it while parsing (a refused request): nothing to answer
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        if self._in_head and not self.transport.is_closing():
            if self._head_began:
                self._head_bytes = len(data) - self._head_start(data)
            else:
                self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse_head()
                return
        self._watch()

    def _head_start(self, data: bytes) -> int:
        """Where in `data` the incomplete head that began in it starts: after whatever
        ended the request before it in the same chunk. That request ended at its head's
        blank line, or (a Content-Length body) that many body bytes later; a chunked body
        ends at a blank line too. The incomplete head holds no blank line, so the last one
        in the chunk is the previous request's; with none in it, the read may begin with
        the rest of one split between this read and the last. Should that request's body
        contain a blank line, the head is counted short (never long), by less than that
        body."""
        blank = data.rfind(HEAD_END)
        if blank >= 0:
            start = blank + len(HEAD_END)
        else:
            start = next((len(rest) for rest in SPLIT_HEAD_ENDS if data.startswith(rest)), 0)
        return min(start + self._body_before_head, len(data))

    def _refuse_head(self) -> None:
        """A head still incomplete past the limit: 431 and close, or only close if an
        earlier pipelined request's answer is still owed (nothing may be written before
        it; that request then sees a disconnect)."""
        logs.unauthenticated.warning(
            "request head too large", outcome="head_too_large", limit=self.max_head_bytes
        )
        cycle = self.cycle
        if not self.pipeline and (cycle is None or cycle.response_complete):
            self.transport.write(HEAD_TOO_LARGE_RESPONSE)
        self._arm(None)
        self.transport.close()

    # --- parser callbacks: where the parser is, and how many bytes a head took -----------

    def on_message_begin(self) -> None:
        self._body_before_head = 0 if self._chunked else self._chunk_body
        self._chunked = False
        self._chunk_body = 0
        self._head_began = True
        self._in_head = True
        self._in_body = False
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        if self.transport.is_closing():
            raise _HungUp  # refused while this chunk was parsed: start nothing more
        self._in_head = False
        self._in_body = True
        self._head_bytes = 0
        super().on_headers_complete()

    def on_chunk_header(self) -> None:
        self._chunked = True

    def on_body(self, body: bytes) -> None:
        self._chunk_body += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_body = False
        super().on_message_complete()

    # --- requests and their answers ----------------------------------------------------

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        """uvicorn starts a request's application here: at once when its head is parsed,
        or, pipelined, when the answer before it is sent. A trusted proxy's request is
        screened first."""
        if self._via_proxy and not self._screen_request(cycle):
            return
        super()._start_asgi_task(cycle, app)

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

    def _screen_request(self, cycle: RequestResponseCycle) -> bool:
        """A request through a trusted proxy is about to start: judge the client its head
        names (allowlist, per-client cap) and charge it until the answer is sent. A refused
        request's connection is dropped unanswered (the proxy answers its client 502)."""
        host = self.policy.forwarded_client(cycle.scope["headers"], self._peer)
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
        cycle.scope["client"] = (host, 0)  # the request's scope names the real client
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
        return self._in_head

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
        phase: Phase
        cycle = self.cycle
        if self.transport.is_closing() or self.pipeline:
            phase = None  # a request is processed, more wait their turn: none reads bytes
        elif self._in_body:
            phase = "body"  # the current request's body is arriving
        elif cycle is not None and not cycle.response_complete:
            phase = None  # a complete request is processed (the next head may trickle in)
        else:
            phase = "head"
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
