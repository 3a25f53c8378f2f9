"""Open the event log for the inspection commands (log, show, verify): read-only.

The connection is opened with ``mode=ro``, so inspecting a log can never change
it, never re-create a dropped trigger, and never create an empty log by mistake.
Any SQLite error while reading becomes a one-line user error, and rows are
converted tolerantly: a tampered column is shown (and reported by verify), it
never crashes the command.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec

from eventmail.cli.common import EVENTS_DB, UserError
from eventmail.cli.render import Row
from eventmail.store import Record, SQLiteLog

RECORD_COLUMNS = "seq, ts, type, accounts, payload, message, prev_hash, hash"
ROW_COLUMNS = "seq, ts, type, accounts, payload, length(message), prev_hash, hash"


@contextmanager
def reading_log(data: Path) -> Iterator[SQLiteLog]:
    path = data / EVENTS_DB
    if not path.is_file():
        raise UserError(f"no event log at {path} (create an account or run `eventmail serve`)")
    try:
        log = SQLiteLog(path, readonly=True)
    except sqlite3.Error as exc:
        raise UserError(f"cannot open the event log {path}: {exc}") from exc
    try:
        yield log
    except sqlite3.Error as exc:
        raise UserError(f"cannot read the event log {path}: {exc}") from exc
    finally:
        log.close()


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def _accounts(value: object) -> tuple[str, ...]:
    try:
        return msgspec.json.decode(_text(value), type=tuple[str, ...])
    except (msgspec.DecodeError, msgspec.ValidationError):
        return (f"(unreadable: {_text(value)})",)


def as_row(columns: tuple) -> Row:
    """A row selected with ``ROW_COLUMNS`` (message length, not bytes)."""
    seq, ts, type_, accounts, payload, size, prev_hash, hash_ = columns
    return Row(
        seq=seq,
        ts=_text(ts),
        type=_text(type_),
        accounts=_accounts(accounts),
        payload=_text(payload),
        prev_hash=_text(prev_hash),
        hash=_text(hash_),
        message_size=size,
    )


def as_record(columns: tuple) -> Record:
    """A row selected with ``RECORD_COLUMNS``; damaged columns stay visibly wrong."""
    seq, ts, type_, accounts, payload, message, prev_hash, hash_ = columns
    if isinstance(message, str):
        message = message.encode("utf-8", errors="surrogateescape")
    return Record(
        seq=seq,
        ts=_text(ts),
        type=_text(type_),
        accounts=_accounts(accounts),
        payload=payload if isinstance(payload, bytes) else _text(payload).encode("utf-8"),
        message=message,
        prev_hash=_text(prev_hash),
        hash=_text(hash_),
    )


def records(conn: sqlite3.Connection, after: int = 0, chunk: int = 256) -> Iterator[Record]:
    """Every record after ``after`` in order, read a chunk at a time (bounded memory)."""
    while True:
        rows = conn.execute(
            f"SELECT {RECORD_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, chunk),
        ).fetchall()
        for row in rows:
            yield as_record(row)
        if len(rows) < chunk:
            return
        after = rows[-1][0]


def record_at(conn: sqlite3.Connection, seq: int) -> Record | None:
    row = conn.execute(f"SELECT {RECORD_COLUMNS} FROM events WHERE seq = ?", (seq,)).fetchone()
    return None if row is None else as_record(row)
