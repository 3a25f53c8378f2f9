"""The event log interface shared by every backend.

A log is an append-only, gapless sequence of ``Record``s. ``append`` commits a
whole batch in one transaction and returns the stored records, or raises and
stores nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Protocol

import msgspec

from eventmail import events
from eventmail.events import Event

GENESIS_HASH = "0" * 64


class LogWriteError(Exception):
    """The log could not be written; nothing of the batch was stored."""


class LogBusy(LogWriteError):
    """Another writer held the log beyond the busy timeout. Retry later."""


class LogUnavailable(LogWriteError):
    """The log cannot be written at all (disk full, read-only, corrupt)."""


class LogConflict(LogWriteError):
    """The log moved past the head the caller decided on; re-read and retry."""


class Append(msgspec.Struct, frozen=True):
    """One event to append, with the message bytes it carries (if any)."""

    event: Event
    message: bytes | None = None


class Record(msgspec.Struct, frozen=True, kw_only=True):
    """One stored event as the log holds it."""

    seq: int
    ts: str  # UTC, microseconds: 2026-11-29T23:32:39.123456Z
    type: str
    accounts: tuple[str, ...]
    payload: bytes  # the canonical JSON encoding of the event
    message: bytes | None
    prev_hash: str
    hash: str

    @property
    def event(self) -> Event:
        return events.decode(self.payload)


class Head(msgspec.Struct, frozen=True):
    seq: int
    hash: str


EMPTY_HEAD = Head(0, GENESIS_HASH)


def format_ts(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def utc_now() -> str:
    return format_ts(datetime.now(UTC))


class EventLog(Protocol):
    def append(self, batch: Sequence[Append], *, expect_seq: int | None = None) -> list[Record]:
        """Commit the batch in one transaction; return its records in order.

        With ``expect_seq``, refuse with ``LogConflict`` (storing nothing) unless
        the head is still that seq: optimistic concurrency for commands that
        decided on what they read.
        """
        ...

    def read_after(
        self, seq: int, *, limit: int | None = None, types: Iterable[str] | None = None
    ) -> Iterator[Record]:
        """Records with a seq above ``seq`` in order (optionally only some types)."""
        ...

    def read(self, seq: int) -> Record | None: ...

    def head(self) -> Head: ...

    def close(self) -> None: ...
