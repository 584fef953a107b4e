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
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import sys
from functools import cache
from typing import Any, Literal

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from glisk_pipeline.settings import Settings, load_settings
from webhook_service.logs import ThrottledUvicornWarnings

Phase = Literal["head", "body", "answer"] | None
TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n"
    b"content-length: 24\r\n\r\n"
    b"request read timed out\r\n"
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
        self._phase: Phase = None
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()  # a kept-alive connection now waits for the next head

    def connection_lost(self, exc: Exception | None) -> None:
        self._arm(None)
        super().connection_lost(exc)

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
        if phase is not None:
            self._deadline = self.loop.call_later(self.read_timeout, self._expired)

    def _expired(self) -> None:
        self._deadline = None
        if self._phase == "answer":
            # Nothing more can be written, and close() would wait to flush the buffer.
            self._phase = None
            self.transport.abort()
            return
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if self._phase == "head":
            # Part of a head came: say why we hang up. An idle connection just closes.
            if self.conn.trailing_data[0]:
                self.transport.write(TIMEOUT_RESPONSE)
        elif cycle is not None and not cycle.response_started:
            self.transport.write(TIMEOUT_RESPONSE)
        if self._phase == "body" and cycle is not None and not cycle.response_complete:
            # The application is waiting for body bytes: it gets a disconnect now, and
            # any answer it still sends is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        self._phase = None
        self.transport.close()
