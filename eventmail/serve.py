"""``eventmail serve``: the composition root that wires the write and read sides.

One process holds the data directory: a group committer owns the writer
connection; a feed task notices new events (ours or another process's) and
refreshes the accounts fold and wakes the projector; the projector applies
events to the spools on a worker thread; the SMTP and POP3 servers run on top.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

from eventmail import datadir
from eventmail.accounts import Accounts
from eventmail.config import Config
from eventmail.events import Event
from eventmail.pop3.backend import MailboxMessage
from eventmail.pop3.server import Pop3Server
from eventmail.smtp.server import SmtpServer
from eventmail.store import LogWriteError, Record, SQLiteLog
from eventmail.store.committer import GroupCommitter, Receipt
from eventmail.store.watch import HeadWatcher
from projections import mailbox
from projections.layout import spool_path
from projections.projector import Projector
from projections.spoolformat import IndexEntry, pop3_message

log = logging.getLogger("eventmail")


class StartupError(Exception):
    """The server cannot start (port in use, data directory busy): one line."""


@dataclass(frozen=True)
class Endpoints:
    smtp: tuple[str, int]
    pop3: tuple[str, int]
    domains: Sequence[str]


RETRY_MIN, RETRY_MAX = 0.5, 30.0  # seconds between attempts after a projection failure
SLOW_CATCH_UP = 1.0  # seconds; a catch-up this long is logged with the remaining lag


class ProjectionRunner:
    """Runs the sync projector on a worker thread and lets readers wait for a seq."""

    def __init__(self, projector: Projector) -> None:
        self.projector = projector
        self.applied_seq = projector.applied_seq
        self._wake = trio.Event()
        self._applied = trio.Condition()
        # One catch_up at a time: two threads folding the same events would apply them twice.
        self._catching_up = trio.Lock()

    def kick(self) -> None:
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        delay = RETRY_MIN
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            if await self.try_catch_up():
                delay = RETRY_MIN
                continue
            # The log is safe; only the spools lag. Retry (the projector recovers
            # from its checkpoint on its next call) without taking the server down.
            await trio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
            self.kick()

    async def try_catch_up(self) -> bool:
        """``catch_up``, logging instead of raising when the spools cannot be written."""
        try:
            await self.catch_up()
        except OSError as exc:
            log.error("projection failed (spools lag behind the log; retrying): %s", exc)
            return False
        return True

    async def catch_up(self) -> None:
        async with self._catching_up:
            started = trio.current_time()
            applied = await trio.to_thread.run_sync(self.projector.catch_up)
            elapsed = trio.current_time() - started
        if elapsed >= SLOW_CATCH_UP:  # the lag is worth an operator's attention
            stats = await trio.to_thread.run_sync(self.projector.statistics)
            log.info(
                "projector reached seq %d after %.1f s; %d events behind the log",
                applied,
                elapsed,
                stats.lag,
            )
        if applied != self.applied_seq:
            self.applied_seq = applied
            async with self._applied:
                self._applied.notify_all()

    async def wait_applied(self, seq: int) -> None:
        """Return once every event up to ``seq`` is in the spools."""
        async with self._applied:
            while self.applied_seq < seq:
                self.kick()
                await self._applied.wait()


class EventFeed:
    """Notices new events, from this process or another, and fans them out.

    Every poll interval a cheap change probe (``PRAGMA data_version``) tells
    whether anyone committed, this process included; only then is the head read,
    the accounts fold brought up to date and the projector woken. Waking the
    projector per commit instead would make it fold and checkpoint every POP3
    retrieval record; a POP3 login does not wait for the poll, as it wakes the
    projector itself (``ProjectionRunner.wait_applied``).
    """

    def __init__(
        self,
        reader: SQLiteLog,
        accounts: Accounts,
        projection: ProjectionRunner,
        poll_interval: float,
    ) -> None:
        self._reader = reader
        self._accounts = accounts
        self._projection = projection
        self._poll_interval = poll_interval
        self._watcher = HeadWatcher(reader, poll_interval)
        self._seen = -1

    def head_seq(self) -> int:
        return self._reader.head().seq

    def refresh(self) -> None:
        seq = self._watcher.probe().seq
        if seq != self._seen:
            self._seen = seq
            self._accounts.catch_up(self._reader)
            self._projection.kick()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.refresh()
        task_status.started()
        while True:
            await trio.sleep(self._poll_interval)
            self.refresh()


class _Snapshot:
    """A POP3 session's view of a mailbox: its index at login and the spool kept open."""

    __slots__ = ("entries", "fd")

    def __init__(self, entries: dict[int, IndexEntry], fd: int | None) -> None:
        self.entries = entries
        self.fd = fd  # None if there is no spool file (an empty mailbox)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class ProjectedMailboxes:
    """The POP3 backend: authentication from the accounts fold, mail from the projection."""

    def __init__(
        self,
        spool_dir: Path,
        accounts: Accounts,
        feed: EventFeed,
        projection: ProjectionRunner,
        committer: GroupCommitter,
    ) -> None:
        self._spool_dir = spool_dir
        self._accounts = accounts
        self._feed = feed
        self._projection = projection
        self._committer = committer
        self._snapshots: dict[str, _Snapshot] = {}

    async def authenticate(self, user: str, password: str) -> str | None:
        # Another process may have just created the account or changed the password.
        self._feed.refresh()
        name = user.lower()
        ok = await trio.to_thread.run_sync(self._accounts.check_password, name, password)
        return name if ok else None

    async def open_mailbox(self, account: str) -> list[MailboxMessage]:
        head = self._feed.head_seq()  # everything committed before this login
        await self._projection.wait_applied(head)
        snapshot = await trio.to_thread.run_sync(self._snapshot, account, head)
        self.release_mailbox(account)
        self._snapshots[account] = snapshot
        return [
            MailboxMessage(seq=e.seq, octets=e.octets, uidl=e.uidl)
            for e in snapshot.entries.values()
        ]

    def _snapshot(self, account: str, head: int) -> _Snapshot:
        entries = mailbox.read_index(self._spool_dir, account, head)
        try:
            # Opened after the index is read: the spool holds at least what it names.
            fd: int | None = os.open(spool_path(self._spool_dir, account), os.O_RDONLY)
        except FileNotFoundError:
            fd = None
        return _Snapshot({entry.seq: entry for entry in entries}, fd)

    def release_mailbox(self, account: str) -> None:
        snapshot = self._snapshots.pop(account, None)
        if snapshot is not None:
            snapshot.close()

    async def read_message(self, account: str, message: MailboxMessage) -> bytes:
        await trio.lowlevel.checkpoint_if_cancelled()
        snapshot = self._snapshots[account]
        entry = snapshot.entries[message.seq]
        if snapshot.fd is None:
            raise mailbox.SpoolMismatch(f"mailbox {account!r} is gone")
        # A few KB of a page-cached file: cheaper in the event loop than a thread hop.
        data = os.pread(snapshot.fd, entry.length, entry.offset)
        if len(data) != entry.length or not data.startswith(b"From ") or not data.endswith(b"\n\n"):
            raise mailbox.SpoolMismatch(f"mailbox {account!r} changed under message {entry.seq}")
        content = pop3_message(data)
        if len(content) != entry.octets:
            raise mailbox.SpoolMismatch(f"mailbox {account!r} changed under message {entry.seq}")
        return content

    async def submit(self, event: Event) -> Receipt:
        return await self._committer.submit(event)

    async def append(self, event: Event) -> Record:
        return await self._committer.append(event)


async def _listen(host: str, port: int, what: str) -> list[trio.SocketListener]:
    try:
        return await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"cannot listen for {what} on {host}:{port}: address in use"
            ) from None
        raise StartupError(f"cannot listen for {what} on {host}:{port}: {exc.strerror}") from None


def _where(listeners: list[trio.SocketListener]) -> str:
    host, port = listeners[0].socket.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def serve(data: Path, cfg: Config, endpoints: Endpoints) -> None:
    """Run both servers until SIGINT/SIGTERM, then shut down gracefully."""
    with datadir.exclusive(data, "eventmail serve"):
        await _serve_locked(data, cfg, endpoints)


async def _serve_locked(data: Path, cfg: Config, endpoints: Endpoints) -> None:
    db = data / datadir.EVENTS_DB
    spool_dir = data / datadir.SPOOL_DIR
    try:
        writer, reader, projector_log = (
            SQLiteLog(db, busy_timeout=cfg.log.busy_timeout) for _ in range(3)
        )
    except LogWriteError as exc:
        raise StartupError(f"cannot open the event log {db}: {exc}") from None
    try:
        projector = Projector(spool_dir, projector_log)
        try:
            await trio.to_thread.run_sync(projector.recover)
        except OSError as exc:
            raise StartupError(f"cannot prepare the spools in {spool_dir}: {exc}") from None
        projection = ProjectionRunner(projector)
        await projection.try_catch_up()

        committer = GroupCommitter(writer, max_batch=cfg.log.max_batch)
        accounts = Accounts()
        feed = EventFeed(reader, accounts, projection, cfg.log.poll_interval)
        hostname = cfg.smtp.hostname or socket.gethostname()

        smtp_listeners = await _listen(*endpoints.smtp, "SMTP")
        pop3_listeners = await _listen(*endpoints.pop3, "POP3")
        smtp = SmtpServer(
            cfg.smtp,
            domains=endpoints.domains,
            hostname=hostname,
            is_local_account=accounts.__contains__,
            append=committer.append,
        )
        pop3 = Pop3Server(
            cfg.pop3,
            backend=ProjectedMailboxes(spool_dir, accounts, feed, projection, committer),
            hostname=hostname,
        )
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as background:
                await background.start(committer.run)
                await background.start(projection.run)
                await background.start(feed.run)
                async with trio.open_nursery() as servers:
                    await servers.start(smtp.serve, smtp_listeners)
                    await servers.start(pop3.serve, pop3_listeners)
                    _announce(smtp_listeners, pop3_listeners, data, endpoints.domains)
                    async for signum in signals:
                        log.info("received %s: shutting down", signal.Signals(signum).name)
                        break
                    async with trio.open_nursery() as stopping:
                        stopping.start_soon(smtp.shutdown, cfg.smtp.shutdown_grace)
                        stopping.start_soon(pop3.shutdown, cfg.smtp.shutdown_grace)
                    servers.cancel_scope.cancel()
                # Every acknowledged event is committed; bring the spools up to date.
                await projection.try_catch_up()
                background.cancel_scope.cancel()
        log.info("stopped")
    finally:
        for store in (writer, reader, projector_log):
            store.close()


def _announce(
    smtp: list[trio.SocketListener],
    pop3: list[trio.SocketListener],
    data: Path,
    domains: Sequence[str],
) -> None:
    print(f"eventmail: SMTP listening on {_where(smtp)}", flush=True)
    print(f"eventmail: POP3 listening on {_where(pop3)}", flush=True)
    print(
        f"eventmail: ready; data directory {data}, domains {', '.join(domains)}",
        flush=True,
    )


def configure_logging() -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
