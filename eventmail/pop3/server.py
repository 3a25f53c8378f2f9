"""The POP3 server: a thin Trio shell around the sans-IO core in ``protocol.py``.

The shell reads bytes, feeds the core, writes its replies and answers its requests
through the backend. It owns what the core must not know about: time (idle timeout,
login delay), the per-mailbox lock, the connection cap, the peer address, and the
error boundary around each connection.

Durability: a client relies on state changes (QUIT's +OK after deletions), so the
MailboxReset is durable before the reply. A retrieval is an audit record: RETR/TOP
queue their MailboxFetched with the committer *before* the content is written, but
do not wait for the commit. The session keeps the outstanding records; it waits for
all of them before it queues the MailboxReset (a failed one refuses the deletions),
and before it closes for any other reason. Once one has failed, further RETR/TOP are
refused: the log is not taking records. The log order is therefore always
MessageAccepted, then MailboxFetched, then MailboxReset.
"""

from __future__ import annotations

import enum
import logging
import math
from collections import OrderedDict, deque

import trio

from eventmail.config import Pop3Config
from eventmail.events import AuthenticationFailed, MailboxFetched, MailboxReset
from eventmail.netio import accept_loop, is_loopback, peer_host, send_last_words
from eventmail.pop3 import replies
from eventmail.pop3.backend import PendingRecord, Pop3Backend
from eventmail.pop3.protocol import (
    NEED_DATA,
    Authenticate,
    Close,
    CommitDeletions,
    FetchMessage,
    OpenMailbox,
    Pop3Connection,
    SendReply,
)
from eventmail.pop3.rawio import SocketIO
from eventmail.store.base import LogWriteError

log = logging.getLogger("eventmail.pop3")

RECEIVE_SIZE = 65536
PLAINTEXT_POLICIES = ("always", "loopback", "never")
MAX_TRACKED_PEERS = 10_000  # failed-login counters kept; the oldest are forgotten
# A login waits for the projection to catch up; a stuck projection must not hold the
# mailbox lock for ever (the client is not being read meanwhile, so a hang-up goes unseen).
OPEN_MAILBOX_TIMEOUT = 60.0
# How long a closing session waits for its fetch records to be committed.
FETCH_RECORD_TIMEOUT = 5.0
LAST_WORDS_TIMEOUT = 1.0  # seconds to deliver a last -ERR before closing


class Pop3Server:
    def __init__(self, config: Pop3Config, *, backend: Pop3Backend, hostname: str) -> None:
        if config.plaintext_auth not in PLAINTEXT_POLICIES:
            raise ValueError(
                f"pop3.plaintext_auth must be one of {', '.join(PLAINTEXT_POLICIES)}, "
                f"not {config.plaintext_auth!r}"
            )
        self.config = config
        self.backend = backend
        self.hostname = hostname
        self.locked: set[str] = set()  # accounts with a session in TRANSACTION or UPDATE
        self._failures: OrderedDict[str, int] = OrderedDict()  # failed logins per peer IP
        self._sessions: set[_Session] = set()
        self._closing = False
        self._accept_scope = trio.CancelScope()
        self._session_scope: trio.CancelScope | None = None
        self._drained = trio.Event()

    @property
    def active(self) -> int:
        return len(self._sessions)

    # --- listening and shutting down ---------------------------------------------

    async def serve(
        self,
        listeners: list[trio.SocketListener],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept connections until ``shutdown``; return once every session has ended."""
        async with trio.open_nursery() as sessions:
            self._session_scope = sessions.cancel_scope
            with self._accept_scope:
                async with trio.open_nursery() as acceptors:
                    for listener in listeners:
                        acceptors.start_soon(accept_loop, listener, self.handle, sessions, "POP3")
                    task_status.started()

    async def shutdown(self, grace: float) -> None:
        """Stop accepting; idle sessions get -ERR [SYS/TEMP] and close, deleting nothing.

        A session busy with a request (a QUIT committing its MailboxReset, a RETR
        recording its fetch) finishes it first; after ``grace`` seconds the rest are
        cancelled.
        """
        self._closing = True
        self._accept_scope.cancel()
        for session in list(self._sessions):
            session.interrupt_read()
        if self._sessions:
            with trio.move_on_after(grace):
                await self._drained.wait()
        if self._session_scope is not None:
            self._session_scope.cancel()

    # --- one connection ------------------------------------------------------------

    async def handle(self, stream: trio.abc.Stream, peer: str) -> None:
        """Serve one client; never raises (except cancellation), always closes ``stream``."""
        if len(self._sessions) >= self.config.max_connections or self._closing:
            reply = replies.SHUTTING_DOWN if self._closing else replies.TOO_MANY_CONNECTIONS
            await send_last_words(stream, reply, LAST_WORDS_TIMEOUT)
            await trio.aclose_forcefully(stream)
            return
        session = _Session(self, stream, peer)
        self._sessions.add(session)
        try:
            await session.run()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away; nothing is deleted
        except Exception:
            log.exception("POP3 session with %s failed", peer)
            await send_last_words(stream, replies.INTERNAL_ERROR, LAST_WORDS_TIMEOUT)
        finally:
            await session.settle_fetch_records(FETCH_RECORD_TIMEOUT)
            if session.account is not None:
                self.locked.discard(session.account)
                self.backend.release_mailbox(session.account)
            self._sessions.discard(session)
            if self._closing and not self._sessions:
                self._drained.set()
            await trio.aclose_forcefully(stream)

    def plaintext_allowed(self, peer: str) -> bool:
        policy = self.config.plaintext_auth
        return policy == "always" or (policy == "loopback" and is_loopback(peer_host(peer)))

    def login_failed(self, peer: str) -> float:
        """Count a failed login from the peer's address; return the delay before replying."""
        host = peer_host(peer)
        count = self._failures.pop(host, 0) + 1
        self._failures[host] = count
        while len(self._failures) > MAX_TRACKED_PEERS:
            self._failures.popitem(last=False)
        delay = self.config.login_delay_base * 2 ** min(count - 1, 32)
        return min(delay, self.config.login_delay_max)

    def login_succeeded(self, peer: str) -> None:
        self._failures.pop(peer_host(peer), None)


class _Phase(enum.Enum):
    BUSY = "busy"  # working on a command or a request
    RECEIVING = "receiving"
    SENDING = "sending"


class _Session:
    """The shell's side of one connection: the loop that drives a ``Pop3Connection``."""

    def __init__(self, server: Pop3Server, stream: trio.abc.Stream, peer: str) -> None:
        self.server = server
        self.stream = stream
        self.peer = peer
        # Real sockets take the fast path; other streams (tests' memory streams) their own.
        self._wire: SocketIO | trio.abc.Stream = (
            SocketIO(stream) if isinstance(stream, trio.SocketStream) else stream
        )
        self.account: str | None = None  # set while this session holds the mailbox lock
        self.audited = 0
        self._idle_timeout = server.config.idle_timeout
        # One cancel scope for all client I/O: its deadline is moved before each read
        # and write (cheaper than a scope per call).
        self._io = trio.CancelScope()
        self._phase = _Phase.BUSY
        self._interrupted = False
        # MailboxFetched records queued but not yet known durable, oldest first.
        self._fetch_records: deque[PendingRecord] = deque()
        self._log_failed = False  # a fetch record could not be committed

    def _fetch_records_ok(self) -> bool:
        """Forget the fetch records already durable; False once one has failed."""
        records = self._fetch_records
        while records and records[0].settled:
            if not records.popleft().durable:
                self._log_failed = True
        return not self._log_failed

    async def _await_fetch_records(self) -> bool:
        """Wait until every queued fetch record is settled; True if all are durable."""
        records = self._fetch_records
        while records:
            try:
                await records.popleft().result()
            except LogWriteError:
                self._log_failed = True
        return not self._log_failed

    async def settle_fetch_records(self, timeout: float) -> None:
        """At session end: wait (shielded, bounded) for the fetch records still in flight."""
        if not self._fetch_records_ok():
            log.warning("a retrieval by %s could not be recorded", self.account)
        if not self._fetch_records:
            return
        done = trio.Event()

        async def wait_all() -> None:
            # result() cannot be cancelled, so the waiting is done outside this session.
            try:
                ok = await self._await_fetch_records()
            except Exception:  # a system task must not raise
                ok = False
            if not ok:
                log.warning("a retrieval by %s could not be recorded", self.account)
            done.set()

        trio.lowlevel.spawn_system_task(wait_all)
        with trio.CancelScope(shield=True), trio.move_on_after(timeout) as waited:
            await done.wait()
        if waited.cancelled_caught:
            log.warning("retrieval records of %s not committed within %ss", self.peer, timeout)

    def interrupt_read(self) -> None:
        self._interrupted = True
        if self._phase is _Phase.RECEIVING:
            self._io.cancel()

    async def run(self) -> None:
        with self._io:
            await self._converse()
        if not self._io.cancelled_caught:
            return
        # The I/O scope ended the conversation: a deadline, or a shutdown during a read.
        if self._phase is _Phase.SENDING:
            log.info("POP3 client %s stopped reading; closing", self.peer)
        else:
            await self._last_word(
                replies.SHUTTING_DOWN if self._interrupted else replies.IDLE_TIMEOUT
            )

    async def _converse(self) -> None:
        config = self.server.config
        conn = Pop3Connection(
            hostname=self.server.hostname,
            max_line=config.max_command_line,
            error_budget=config.error_budget,
            plaintext_allowed=self.server.plaintext_allowed(self.peer),
        )
        out: list[bytes] = []
        next_event = conn.next_event
        while True:
            event = next_event()
            if type(event) is SendReply:
                out.append(event.data)
                continue
            # Flush before waiting on anything, so pipelined replies go out in one write.
            if out:
                await self._send(out[0] if len(out) == 1 else b"".join(out))
                out = []
            if event is NEED_DATA:
                if self._interrupted:
                    await self._last_word(replies.SHUTTING_DOWN)
                    return
                conn.receive_data(await self._receive())
            elif isinstance(event, FetchMessage):
                await self._fetch(conn, event)
            elif isinstance(event, Close):
                return
            else:
                # Not a client wait: the I/O deadline does not apply to the backend.
                self._io.deadline = math.inf
                if isinstance(event, Authenticate):
                    await self._authenticate(conn, event)
                elif isinstance(event, OpenMailbox):
                    await self._open_mailbox(conn, event)
                elif isinstance(event, CommitDeletions):
                    await self._commit_deletions(conn, event)

    async def _send(self, data: bytes) -> None:
        self._phase = _Phase.SENDING
        # Usually the deadline set for the read just before still has (nearly) the whole
        # timeout to run: moving a deadline costs more than checking it. After a backend
        # request it is infinite, and must be set.
        deadline = trio.current_time() + self._idle_timeout
        if not deadline - 1.0 <= self._io.deadline <= deadline:
            self._io.deadline = deadline
        await self._wire.send_all(data)
        self._phase = _Phase.BUSY

    async def _receive(self) -> bytes:
        self._phase = _Phase.RECEIVING
        self._io.deadline = trio.current_time() + self._idle_timeout
        data = await self._wire.receive_some(RECEIVE_SIZE)
        self._phase = _Phase.BUSY
        return data

    async def _last_word(self, reply: bytes) -> None:
        with trio.move_on_after(self._idle_timeout):
            await self.stream.send_all(reply)

    async def _authenticate(self, conn: Pop3Connection, request: Authenticate) -> None:
        server = self.server
        account = await server.backend.authenticate(request.user, request.password)
        if account is None:
            delay = server.login_failed(self.peer)
            await self._audit_failure(request.user)
            await trio.sleep(delay)
            conn.authentication_failed()
            return
        server.login_succeeded(self.peer)
        if account in server.locked:
            conn.mailbox_in_use()
            return
        server.locked.add(account)
        self.account = account
        conn.authenticated(account)

    async def _audit_failure(self, user: str) -> None:
        if self.audited >= self.server.config.max_audited_failures:
            return
        self.audited += 1
        event = AuthenticationFailed(protocol="pop3", user=user, peer=self.peer)
        try:
            await self.server.backend.append(event)
        except LogWriteError as exc:
            log.warning("could not record a failed POP3 login from %s: %s", self.peer, exc)

    async def _open_mailbox(self, conn: Pop3Connection, request: OpenMailbox) -> None:
        messages = None
        try:
            with trio.move_on_after(OPEN_MAILBOX_TIMEOUT):
                messages = await self.server.backend.open_mailbox(request.account)
            problem = "timed out waiting for the projection" if messages is None else ""
        except (OSError, LogWriteError) as exc:
            problem = str(exc)
        if messages is None:
            log.warning("cannot open the mailbox of %s: %s", request.account, problem)
            self.server.locked.discard(request.account)
            self.server.backend.release_mailbox(request.account)
            self.account = None
            conn.mailbox_unavailable()
            return
        conn.mailbox_opened(messages)

    async def _fetch(self, conn: Pop3Connection, request: FetchMessage) -> None:
        assert self.account is not None
        if not self._fetch_records_ok():
            conn.fetch_failed()
            return
        message = request.message
        backend = self.server.backend
        content = await backend.read_message(self.account, message)
        event = MailboxFetched(
            account=self.account,
            message_seq=message.seq,
            uidl=message.uidl,
            command=request.kind,
            peer=self.peer,
        )
        try:
            # Queued before the content is written; not waited for (see the module doc).
            self._fetch_records.append(await backend.submit(event))
        except LogWriteError as exc:
            log.warning("could not record %s by %s: %s", request.kind, self.account, exc)
            conn.fetch_failed()
            return
        conn.message_fetched(content)

    async def _commit_deletions(self, conn: Pop3Connection, request: CommitDeletions) -> None:
        if not await self._await_fetch_records():
            log.warning("not removing messages of %s: a retrieval was not recorded", self.account)
            conn.deletions_failed()
            return
        event = MailboxReset(account=request.account, removed=request.seqs, peer=self.peer)
        try:
            await self.server.backend.append(event)
        except LogWriteError as exc:
            log.warning("could not remove messages of %s: %s", request.account, exc)
            conn.deletions_failed()
            return
        conn.deletions_committed()
