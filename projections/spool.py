"""The spool fold: log records in, spool actions out. Pure: no I/O, no clock.

Each record becomes zero or more actions the projector carries out:

- ``MessageAccepted`` -> one ``Deliver`` per distinct recipient account, carrying
  the finished mboxrd entry and what its index line needs;
- ``AccountCreated`` -> ``Create`` (an empty mailbox, if there is none yet);
- ``MailboxReset`` -> ``Reset`` (rewrite the mailbox without those seqs);
- ``AccountRemoved`` -> ``Remove`` (move the mailbox aside; a later
  ``AccountCreated`` of the same name starts empty).

Every other event leaves the spools alone. Mail for an account that was never
created (``postmaster``) is spooled like any other.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from eventmail import events
from eventmail.events import AccountCreated, AccountRemoved, MailboxReset, MessageAccepted
from eventmail.store.base import Record, parse_ts
from projections.layout import is_account_name
from projections.spoolformat import (
    IndexEntry,
    PreparedMessage,
    delivery_header,
    from_line,
    uidl,
)


class Deliver(msgspec.Struct, frozen=True):
    account: str
    seq: int
    parts: tuple[bytes, ...]  # the mboxrd entry appended to the spool, in pieces
    length: int  # bytes of the entry
    octets: int  # its size as POP3 sends it
    uidl: str

    @property
    def entry(self) -> bytes:
        return b"".join(self.parts)


class Create(msgspec.Struct, frozen=True):
    account: str


class Reset(msgspec.Struct, frozen=True):
    account: str
    removed: frozenset[int]


class Remove(msgspec.Struct, frozen=True):
    account: str
    seq: int


Action = Deliver | Create | Reset | Remove

SPOOL_EVENT_TYPES = ("MessageAccepted", "AccountCreated", "MailboxReset", "AccountRemoved")


class SpoolFold:
    """Turns records into actions.

    Holds only caches of the current timestamp and its From_ lines (cleared when
    the timestamp changes, so bounded by one append batch).
    """

    def __init__(self) -> None:
        self._ts_text = ""
        self._from_lines: dict[str, bytes] = {}

    def actions(self, record: Record) -> list[Action]:
        if record.type not in SPOOL_EVENT_TYPES:
            return []
        match events.decode(record.payload):
            case MessageAccepted() as accepted:
                return self._deliveries(record, accepted)
            case AccountCreated(name=name) if is_account_name(name):
                return [Create(name)]
            case MailboxReset(account=account, removed=removed) if is_account_name(account):
                return [Reset(account, frozenset(removed))]
            case AccountRemoved(name=name) if is_account_name(name):
                return [Remove(name, record.seq)]
        return []

    def _deliveries(self, record: Record, accepted: MessageAccepted) -> list[Action]:
        prepared = PreparedMessage.of(record.message or b"")
        first_line = self._from_line(accepted.mail_from, record.ts)
        stable_id = uidl(record.seq, accepted.sha256)
        seen: set[str] = set()
        actions: list[Action] = []
        for recipient in accepted.recipients:
            account = recipient.account
            if account in seen or not is_account_name(account):
                continue
            seen.add(account)
            header = delivery_header(accepted.mail_from, recipient.address)
            parts, length, octets = prepared.entry_parts(first_line, header)
            actions.append(Deliver(account, record.seq, parts, length, octets, stable_id))
        return actions

    def _from_line(self, mail_from: str, ts: str) -> bytes:
        if ts != self._ts_text:
            self._ts_text = ts
            self._from_lines.clear()
        line = self._from_lines.get(mail_from)
        if line is None:
            line = self._from_lines[mail_from] = from_line(mail_from, parse_ts(ts))
        return line


def without(entries: Sequence[IndexEntry], removed: frozenset[int]) -> list[tuple[int, IndexEntry]]:
    """The entries a reset keeps, each with its old offset and its entry at the new offset.

    Returns an empty list only if nothing is kept; callers check ``changed`` first.
    """
    kept: list[tuple[int, IndexEntry]] = []
    offset = 0
    for entry in entries:
        if entry.seq in removed:
            continue
        moved = IndexEntry(entry.seq, offset, entry.length, entry.octets, entry.uidl)
        kept.append((entry.offset, moved))
        offset += entry.length
    return kept


def changed(entries: Sequence[IndexEntry], removed: frozenset[int]) -> bool:
    """True if a reset removing ``removed`` takes anything out of this mailbox."""
    return any(entry.seq in removed for entry in entries)
