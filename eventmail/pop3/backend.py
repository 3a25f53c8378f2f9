"""What the POP3 server needs from the rest of eventmail.

The composition root (``serve``) implements ``Pop3Backend`` with the accounts fold,
the projection and the group committer; ``eventmail.pop3.memory`` has an in-memory
implementation for tests and tools.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import msgspec

if TYPE_CHECKING:
    from eventmail.events import Event
    from eventmail.store.base import Record


class MailboxMessage(msgspec.Struct, frozen=True):
    seq: int  # seq of the MessageAccepted event
    octets: int  # exact size as sent (CRLF, before byte-stuffing)
    uidl: str


class PendingRecord(Protocol):
    """An event queued for the log (the committer's ``Receipt``), settled in queue order."""

    @property
    def settled(self) -> bool: ...

    @property
    def durable(self) -> bool: ...

    async def result(self) -> Record:
        """Wait, not cancellable, until settled; the record, or raise LogWriteError."""
        ...


class Pop3Backend(Protocol):
    async def authenticate(self, user: str, password: str) -> str | None:
        """The account name if user and password are right, else None (constant work)."""
        ...

    async def open_mailbox(self, account: str) -> list[MailboxMessage]:
        """Wait until every event committed before the call is applied, then snapshot."""
        ...

    async def read_message(self, account: str, message: MailboxMessage) -> bytes:
        """The message as POP3 sends it: CRLF line endings, not byte-stuffed."""
        ...

    def release_mailbox(self, account: str) -> None:
        """The session that opened the mailbox has ended: drop its snapshot."""
        ...

    async def submit(self, event: Event) -> PendingRecord:
        """Queue one event behind everything queued before, without waiting for the commit.

        Raises LogWriteError if the log takes no more events (e.g. its committer stopped).
        """
        ...

    async def append(self, event: Event) -> Record:
        """Append one event (queued like ``submit``); return once it is durable.

        Raises LogWriteError.
        """
        ...
