"""An in-memory ``Pop3Backend`` for tests and tools.

Mailboxes are a fold over an in-memory event log (MessageAccepted in, MailboxReset
out), so it behaves like the projection-backed backend that ``serve`` builds.
"""

from __future__ import annotations

import hashlib
from collections import deque

import trio

from eventmail.events import Event, MailboxReset, MessageAccepted, Recipient
from eventmail.pop3.backend import MailboxMessage
from eventmail.store.base import Append, LogUnavailable, Record
from eventmail.store.committer import Receipt
from eventmail.store.memory import MemoryLog


class MemoryPop3Backend:
    """A ``Pop3Backend`` over a ``MemoryLog``; ``deliver`` plays the SMTP side.

    Appends are queued and committed in order, like the group committer does. Tests
    steer it with ``append_gate`` (queued appends are committed only once the gate
    event is set) and ``fail_appends`` (a new append is refused with LogUnavailable
    and a queued one fails when its turn to commit comes).
    """

    def __init__(self, passwords: dict[str, str] | None = None) -> None:
        self.passwords = dict(passwords or {})
        self.log = MemoryLog()
        self.fail_appends = False
        self.append_gate: trio.Event | None = None
        self.appends_started = 0
        self._queued: deque[Receipt] = deque()
        self._committing = False  # a task waits for the gate to commit the queue

    def deliver(self, account: str, message: bytes, *, mail_from: str = "") -> MailboxMessage:
        """Record a MessageAccepted for ``account`` and return how POP3 will list it."""
        digest = hashlib.sha256(message).hexdigest()
        event = MessageAccepted(
            message_id=f"M{len(message)}",
            mail_from=mail_from,
            recipients=(Recipient(account=account, address=f"{account}@localhost"),),
            peer="127.0.0.1:0",
            helo="test",
            size=len(message),
            sha256=digest,
        )
        (record,) = self.log.append([Append(event, message)])
        return _listed(record)

    def events(self) -> list[Event]:
        return [record.event for record in self.log.read_after(0)]

    async def authenticate(self, user: str, password: str) -> str | None:
        await trio.lowlevel.checkpoint()
        expected = self.passwords.get(user)
        return user if expected is not None and expected == password else None

    async def open_mailbox(self, account: str) -> list[MailboxMessage]:
        await trio.lowlevel.checkpoint()
        return [_listed(record) for record in self._mailbox(account).values()]

    async def read_message(self, account: str, message: MailboxMessage) -> bytes:
        await trio.lowlevel.checkpoint()
        record = self._mailbox(account)[message.seq]
        assert record.message is not None
        return record.message

    def release_mailbox(self, account: str) -> None:
        pass

    def queued(self) -> list[Event]:
        """Events submitted but not committed yet, in order."""
        return [receipt.append.event for receipt in self._queued]

    async def submit(self, event: Event) -> Receipt:
        self.appends_started += 1
        await trio.lowlevel.checkpoint()
        if self.fail_appends:
            raise LogUnavailable("the test made the log unwritable")
        receipt = Receipt(Append(event))
        self._queued.append(receipt)
        if self.append_gate is None and not self._committing:
            self._commit_queued()
        elif not self._committing:
            self._committing = True
            trio.lowlevel.spawn_system_task(self._commit_when_open)
        return receipt

    async def append(self, event: Event) -> Record:
        receipt = await self.submit(event)
        return await receipt.result()

    async def _commit_when_open(self) -> None:
        try:
            while self._queued:
                gate = self.append_gate
                if gate is not None and not gate.is_set():
                    await gate.wait()
                    continue
                self._commit_queued()
        finally:
            self._committing = False
            # Stopped (the test run ends): like a stopped committer, fail what is queued.
            while self._queued:
                self._queued.popleft().settle(None, LogUnavailable("the log has stopped"))

    def _commit_queued(self) -> None:
        while self._queued:
            receipt = self._queued.popleft()
            if self.fail_appends:
                receipt.settle(None, LogUnavailable("the test made the log unwritable"))
            else:
                (record,) = self.log.append([receipt.append])
                receipt.settle(record, None)

    def _mailbox(self, account: str) -> dict[int, Record]:
        messages: dict[int, Record] = {}
        for record in self.log.read_after(0):
            match record.event:
                case MessageAccepted() as accepted if account in accepted.accounts():
                    messages[record.seq] = record
                case MailboxReset(account=owner, removed=removed) if owner == account:
                    for seq in removed:
                        messages.pop(seq, None)
        return messages


def _listed(record: Record) -> MailboxMessage:
    assert record.message is not None
    digest = hashlib.sha256(record.message).hexdigest()
    return MailboxMessage(
        seq=record.seq, octets=len(record.message), uidl=f"{record.seq}.{digest[:16]}"
    )
