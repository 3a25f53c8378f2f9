"""The SMTP server's Trio shell: accept, read, write, time out, answer the core.

The protocol core (``protocol.py``) decides every reply; this module owns the
socket, the clock, limits that need one (timeouts, connection cap), the message
id, the ``Received:`` header and the appends to the event log. Each connection
is an error boundary: an unexpected exception closes that connection with 421
and is logged to stderr; the server keeps running.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import secrets
import socket
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import trio

from eventmail.config import SmtpConfig
from eventmail.events import Event, MessageAccepted, MessageRefused, RecipientRefused
from eventmail.netio import accept_loop, send_last_words
from eventmail.smtp import replies
from eventmail.smtp.protocol import (
    NEED_DATA,
    CheckRecipient,
    CloseConnection,
    MessageComplete,
    MessageRejected,
    ProtocolMisuse,
    RecipientRejected,
    SendReply,
    SmtpProtocol,
    State,
)
from eventmail.smtp.received import received_header
from eventmail.store.base import LogWriteError, Record

log = logging.getLogger("eventmail")

RECEIVE_SIZE = 64 * 1024
FAREWELL_TIMEOUT = 5.0  # seconds to deliver a last 421 before closing

Append = Callable[[Event, bytes | None], Awaitable[Record]]


def new_message_id() -> str:
    """16 characters of base32 randomness: unique enough to name a message."""
    return base64.b32encode(secrets.token_bytes(10)).decode("ascii")


def utc_now() -> datetime:
    return datetime.now(UTC)


class _Hangup(Exception):
    """The client stopped reading; close without further ado."""


class SmtpServer:
    def __init__(
        self,
        config: SmtpConfig,
        *,
        domains: Sequence[str],
        hostname: str,
        is_local_account: Callable[[str], bool],
        append: Append,
        now: Callable[[], datetime] = utc_now,
        new_id: Callable[[], str] = new_message_id,
    ) -> None:
        self.config = config
        self.domains = list(domains)
        self.hostname = hostname or socket.gethostname()
        self.is_local_account = is_local_account
        self.append = append
        self.now = now
        self.new_id = new_id
        self.shutting_down = False
        self._sessions: set[_Session] = set()
        self._no_sessions = trio.Event()
        self._no_sessions.set()
        self._accept_scope: trio.CancelScope | None = None

    @property
    def connections(self) -> int:
        return len(self._sessions)

    async def serve(
        self,
        listeners: list[trio.SocketListener],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept on every listener until cancelled or shut down."""
        async with trio.open_nursery() as handlers:
            with trio.CancelScope() as accept_scope:
                self._accept_scope = accept_scope
                if self.shutting_down:
                    accept_scope.cancel()
                async with trio.open_nursery() as acceptors:
                    for listener in listeners:
                        acceptors.start_soon(accept_loop, listener, self.handle, handlers, "SMTP")
                    task_status.started()

    async def handle(self, stream: trio.abc.Stream, peer: str) -> None:
        """Serve one connection to its end; never raises for the client's sake."""
        if self.shutting_down or len(self._sessions) >= self.config.max_connections:
            refusal = replies.SHUTTING_DOWN if self.shutting_down else replies.TOO_MANY_CONNECTIONS
            await send_last_words(stream, refusal.encode(), FAREWELL_TIMEOUT)
            await trio.aclose_forcefully(stream)
            return
        session = _Session(self, stream, peer)
        self._sessions.add(session)
        if self._no_sessions.is_set():
            self._no_sessions = trio.Event()
        try:
            with session.scope:
                await session.run()
            if session.scope.cancelled_caught:
                await send_last_words(
                    stream, session.unsent() + replies.SHUTTING_DOWN.encode(), FAREWELL_TIMEOUT
                )
        except (trio.BrokenResourceError, trio.ClosedResourceError, _Hangup):
            pass  # the client went away
        except Exception as exc:
            log.exception("SMTP session with %s failed: %r", peer, exc)
            await send_last_words(
                stream, session.unsent() + replies.INTERNAL_ERROR.encode(), FAREWELL_TIMEOUT
            )
        finally:
            self._sessions.discard(session)
            if not self._sessions:
                self._no_sessions.set()
            await trio.aclose_forcefully(stream)

    async def shutdown(self, grace: float) -> None:
        """Stop accepting; close idle sessions now and busy ones after ``grace`` seconds."""
        self.shutting_down = True
        if self._accept_scope is not None:
            self._accept_scope.cancel()
        for session in list(self._sessions):
            session.wake_if_idle()
        with trio.move_on_after(grace):
            await self._wait_no_sessions()
        for session in list(self._sessions):
            session.scope.cancel()
        await self._wait_no_sessions()

    async def _wait_no_sessions(self) -> None:
        while self._sessions:
            await self._no_sessions.wait()


class _Session:
    """One connection: feeds the core and carries out what it asks for."""

    def __init__(self, server: SmtpServer, stream: trio.abc.Stream, peer: str) -> None:
        self.server = server
        self.stream = stream
        self.peer = peer
        self.scope = trio.CancelScope()  # cancelled when the shutdown grace runs out
        # One long-lived scope times every read and write (cheaper than a scope per
        # call); shutdown cancels it to wake a session waiting for a command.
        self._io = trio.CancelScope()
        self._idle = False  # waiting for a command: shutdown may interrupt
        self._woken = False
        self._sending = False
        self.core = SmtpProtocol(server.config, hostname=server.hostname, domains=server.domains)
        self._out = bytearray()
        self._audited = 0

    def unsent(self) -> bytes:
        """Replies not yet written (the session ended before it could flush them)."""
        data = bytes(self._out)
        self._out.clear()
        return data

    def wake_if_idle(self) -> None:
        if self._idle:
            self._woken = True
            self._io.cancel()

    async def run(self) -> None:
        with self._io:
            await self._converse()
        if self._io.cancelled_caught:
            if self._sending:
                raise _Hangup  # the client stopped reading; a 421 would not get through
            reply = replies.SHUTTING_DOWN if self._woken else replies.TIMEOUT
            await send_last_words(self.stream, self.unsent() + reply.encode(), FAREWELL_TIMEOUT)

    async def _converse(self) -> None:
        core = self.core
        while True:
            event = core.next_event()
            if isinstance(event, SendReply):
                self._out += event.reply.encode()
            elif isinstance(event, CheckRecipient):
                core.recipient_checked(bool(self.server.is_local_account(event.account)))
            elif isinstance(event, MessageComplete):
                await self._flush()
                self._io.deadline = math.inf  # the log, not the client, sets this pace
                await self._store(event)
            elif isinstance(event, RecipientRejected | MessageRejected):
                await self._flush()
                self._io.deadline = math.inf
                await self._audit(event)
            elif isinstance(event, CloseConnection):
                await self._flush()
                return
            elif event is NEED_DATA:
                await self._flush()
                data = await self._receive()
                if not data:
                    return
                core.receive_data(data)
            else:
                raise ProtocolMisuse(f"unexpected protocol event {event!r}")

    async def _receive(self) -> bytes:
        """The next bytes; b"" at the end of input or at shutdown (after a 421)."""
        config = self.server.config
        in_data = self.core.state is State.DATA
        if self.server.shutting_down and not in_data:
            self._out += replies.SHUTTING_DOWN.encode()
            await self._flush()
            return b""
        if in_data:
            timeout = config.data_block_timeout
        elif self.core.in_transaction:
            timeout = config.command_timeout
        else:
            timeout = config.idle_timeout
        self._io.deadline = trio.current_time() + timeout
        self._idle = not in_data
        try:
            return await self.stream.receive_some(RECEIVE_SIZE)
        finally:
            self._idle = False

    async def _flush(self) -> None:
        if not self._out:
            return
        data = bytes(self._out)
        self._out.clear()
        self._io.deadline = trio.current_time() + self.server.config.command_timeout
        self._sending = True  # stays True if the send is cancelled: run() must not talk then
        await self.stream.send_all(data)
        self._sending = False

    async def _store(self, complete: MessageComplete) -> None:
        server, envelope = self.server, complete.envelope
        message_id = server.new_id()
        single = envelope.recipients[0].address if len(envelope.recipients) == 1 else None
        header = received_header(
            helo=envelope.helo,
            peer=self.peer,
            hostname=server.hostname,
            protocol=envelope.protocol,
            message_id=message_id,
            recipient=single,
            date=server.now(),
        )
        message = header + complete.data
        accepted = MessageAccepted(
            message_id=message_id,
            mail_from=envelope.mail_from,
            mail_params=envelope.mail_params,
            recipients=envelope.recipients,
            peer=self.peer,
            helo=envelope.helo,
            size=len(message),
            sha256=hashlib.sha256(message).hexdigest(),
        )
        try:
            await server.append(accepted, message)
        except LogWriteError as exc:
            log.warning("SMTP could not record a message from %s: %s", self.peer, exc)
            self.core.message_failed(replies.LOG_WRITE_FAILED)
            return
        self.core.message_stored(message_id)

    async def _audit(self, rejected: RecipientRejected | MessageRejected) -> None:
        """Record a refusal, at most ``max_audited_refusals`` per connection."""
        if self._audited >= self.server.config.max_audited_refusals:
            return
        self._audited += 1
        event: Event
        if isinstance(rejected, RecipientRejected):
            event = RecipientRefused(
                address=rejected.address,
                reason=rejected.reply.text,
                mail_from=rejected.mail_from,
                peer=self.peer,
                helo=rejected.helo,
            )
        else:
            event = MessageRefused(
                reason=rejected.reply.text,
                mail_from=rejected.mail_from,
                recipients=rejected.accounts,
                size=rejected.received,
                peer=self.peer,
                helo=rejected.helo,
            )
        try:
            await self.server.append(event, None)
        except LogWriteError as exc:
            log.warning("SMTP could not record a refusal for %s: %s", self.peer, exc)
