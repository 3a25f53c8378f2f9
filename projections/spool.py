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
from datetime import datetime

import msgspec

from eventmail import events
from eventmail.events import AccountCreated, AccountRemoved, MailboxReset, MessageAccepted
from eventmail.store.base import Record, parse_ts
from projections.layout import is_account_name
from projections.spoolformat import (
    IndexEntry,
    delivery_body,
    entry_from_body,
    pop3_octets,
    uidl,
)


class Deliver(msgspec.Struct, frozen=True):
    account: str
    seq: int
    entry: bytes  # the mboxrd entry appended to the spool
    octets: int  # its size as POP3 sends it
    uidl: str


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
    """Turns records into actions. Holds only a one-entry cache of the last timestamp."""

    def __init__(self) -> None:
        self._ts_text = ""
        self._ts: datetime | None = None

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
        ts = self._time(record.ts)
        message = record.message or b""
        stable_id = uidl(record.seq, accepted.sha256)
        seen: set[str] = set()
        actions: list[Action] = []
        for recipient in accepted.recipients:
            account = recipient.account
            if account in seen or not is_account_name(account):
                continue
            seen.add(account)
            body = delivery_body(
                mail_from=accepted.mail_from, delivered_to=recipient.address, message_crlf=message
            )
            entry = entry_from_body(accepted.mail_from, ts, body)
            actions.append(Deliver(account, record.seq, entry, pop3_octets(body), stable_id))
        return actions

    def _time(self, text: str) -> datetime:
        if text != self._ts_text or self._ts is None:
            self._ts = parse_ts(text)
            self._ts_text = text
        return self._ts


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
