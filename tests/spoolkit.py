"""Shared helpers for the spool, projector and replay tests: events and snapshots."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from eventmail.events import (
    AccountCreated,
    AccountRemoved,
    AuthenticationFailed,
    MailboxFetched,
    MailboxReset,
    MessageAccepted,
    Recipient,
)
from eventmail.store import Append
from eventmail.store.base import format_ts

START = datetime(2026, 11, 29, 23, 0, 0, tzinfo=UTC)


def ticking_clock(
    start: datetime = START, step: timedelta = timedelta(seconds=1)
) -> Callable[[], str]:
    """A deterministic log clock: each call is one step later than the last."""
    moments = iter(start + step * n for n in range(10**9))
    return lambda: format_ts(next(moments))


def created(name: str) -> Append:
    return Append(AccountCreated(name=name, password_hash=f"scrypt$16$8$1$c2FsdA==${name}"))


def removed(name: str) -> Append:
    return Append(AccountRemoved(name=name))


def reset(name: str, seqs: Sequence[int]) -> Append:
    return Append(MailboxReset(account=name, removed=tuple(seqs), peer="127.0.0.1:41000"))


def fetched(name: str, seq: int) -> Append:
    return Append(MailboxFetched(account=name, message_seq=seq, uidl="x", command="RETR", peer="p"))


def noise() -> Append:
    return Append(AuthenticationFailed(protocol="pop3", user="nobody", peer="127.0.0.1:1"))


def mail(
    recipients: Sequence[str | tuple[str, str]],
    message: bytes,
    mail_from: str = "sender@example.org",
) -> Append:
    """A MessageAccepted for accounts (or (account, RCPT address) pairs)."""
    rcpts = tuple(
        Recipient(account=r, address=f"{r}@localhost")
        if isinstance(r, str)
        else Recipient(account=r[0], address=r[1])
        for r in recipients
    )
    event = MessageAccepted(
        message_id="q",
        mail_from=mail_from,
        recipients=rcpts,
        peer="127.0.0.1:40000",
        helo="client.example.org",
        size=len(message),
        sha256=hashlib.sha256(message).hexdigest(),
    )
    return Append(event, message)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path."""
    if not root.exists():
        return {}
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def spools(root: Path) -> dict[str, bytes]:
    """Only the mailboxes (live and removed), without projection state."""
    return {name: data for name, data in snapshot(root).items() if name.endswith(".TXT")}
