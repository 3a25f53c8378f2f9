"""``eventmail log``: query the event log, as a table for people or JSON lines for scripts.

Every filter is a SQL condition (the ``type``/``ts`` indexes and the
``event_accounts`` table do the work); rows are read in pages, so memory stays
bounded however long the log is.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import click
import msgspec

from eventmail.accounts import AccountError, validate_name
from eventmail.cli.common import UserError, data_option
from eventmail.cli.reading import ROW_COLUMNS, as_row, reading_log
from eventmail.cli.render import TABLE_HEADER, Row, json_line, table_line
from eventmail.cli.timespec import TimeSpecError, parse_time
from eventmail.events import EVENT_TYPES

PAGE = 500
FOLLOW_INTERVAL = 0.2  # seconds between polls for new events


class Filters(msgspec.Struct, frozen=True, kw_only=True):
    account: str | None = None
    types: tuple[str, ...] = ()
    since: str | None = None  # inclusive, in the log's ts format
    until: str | None = None  # exclusive

    def sql(self) -> tuple[str, list[object]]:
        clauses: list[str] = []
        params: list[object] = []
        if self.types:
            clauses.append(f"type IN ({','.join('?' * len(self.types))})")
            params.extend(self.types)
        if self.since is not None:
            clauses.append("ts >= ?")
            params.append(self.since)
        if self.until is not None:
            clauses.append("ts < ?")
            params.append(self.until)
        if self.account is not None:
            clauses.append("seq IN (SELECT seq FROM event_accounts WHERE account = ?)")
            params.append(self.account)
        return "".join(f" AND {c}" for c in clauses), params


def read_page(
    conn: sqlite3.Connection, filters: Filters, after: int, upto: int, limit: int
) -> list[Row]:
    """Matching rows with ``after < seq <= upto``, at most ``limit``, in order."""
    where, params = filters.sql()
    sql = f"SELECT {ROW_COLUMNS} FROM events WHERE seq > ? AND seq <= ?{where} ORDER BY seq LIMIT ?"
    return [as_row(row) for row in conn.execute(sql, [after, upto, *params, limit])]


def last_seq(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]


def matching(
    conn: sqlite3.Connection,
    filters: Filters,
    after: int,
    limit: int | None,
    follow: bool,
) -> Iterator[list[Row]]:
    """Pages of matching rows; with ``follow``, keeps polling for new ones forever."""
    remaining = limit
    cursor = after
    while True:
        upto = last_seq(conn)  # pages stop here, so the next poll skips what was scanned
        while remaining is None or remaining > 0:
            want = PAGE if remaining is None else min(PAGE, remaining)
            page = read_page(conn, filters, cursor, upto, want)
            if page:
                yield page
            if remaining is not None:
                remaining -= len(page)
            if len(page) < want:
                cursor = max(cursor, upto)
                break
            cursor = page[-1].seq
        if not follow or remaining == 0:
            return
        time.sleep(FOLLOW_INTERVAL)


def _event_types(values: tuple[str, ...]) -> tuple[str, ...]:
    by_lower = {name.lower(): name for name in EVENT_TYPES}
    chosen = []
    for value in values:
        name = by_lower.get(value.strip().lower())
        if name is None:
            raise UserError(f"unknown event type {value!r}; valid types: {', '.join(EVENT_TYPES)}")
        chosen.append(name)
    return tuple(dict.fromkeys(chosen))


def _bound(option: str, value: str | None, now: datetime) -> str | None:
    if value is None:
        return None
    try:
        moment = parse_time(value, now)
    except TimeSpecError as exc:
        raise UserError(f"invalid {option}: {exc}") from None
    # isoformat pads the year to four digits, so bounds compare correctly as text
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _account(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return validate_name(value)
    except AccountError as exc:
        raise UserError(f"invalid --account: {exc}") from None


class _Stop(Exception):
    """SIGTERM while following: end like Ctrl-C does."""


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        raise _Stop

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _quiet_broken_pipe() -> None:
    """The reader (``| head``) went away: stop without a traceback."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


@click.command("log")
@data_option
@click.option("--account", metavar="NAME", help="Only events that concern account NAME.")
@click.option(
    "--type",
    "types",
    metavar="TYPE",
    multiple=True,
    help="Only events of TYPE (repeatable; case-insensitive), e.g. MessageAccepted.",
)
@click.option(
    "--since",
    metavar="TIME",
    help="Only events at or after TIME: 2026-11-29, 2026-11-29T10:00[Z|+01:00], or an age "
    "such as 10m, 2h, 3d. Naive times are UTC.",
)
@click.option("--until", metavar="TIME", help="Only events before TIME (same forms as --since).")
@click.option(
    "--after",
    metavar="SEQ",
    type=click.IntRange(min=0),
    default=0,
    help="Only events with a sequence number above SEQ.",
)
@click.option(
    "--limit",
    metavar="N",
    type=click.IntRange(min=1),
    help="Stop after the first N matching events (oldest first; combine with --after or "
    "--since to page).",
)
@click.option(
    "--follow",
    "-f",
    is_flag=True,
    help="Keep running and print new matching events as they are appended (Ctrl-C stops).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object per line (seq, ts, type, accounts, prev_hash, hash, "
    "message_size, payload), for jq and scripts.",
)
def log(
    data: Path,
    account: str | None,
    types: tuple[str, ...],
    since: str | None,
    until: str | None,
    after: int,
    limit: int | None,
    follow: bool,
    as_json: bool,
) -> None:
    """Show the events in the log, oldest first, filtered.

    Filters combine with AND. The table shows seq, time, type, the accounts the
    event concerns and a one-line summary; --json shows every stored field except
    the message bytes (use `eventmail show SEQ --raw` for those).

    \b
    Examples:
      eventmail log --account jjordan --since 2h
      eventmail log --type MessageAccepted --type MessageRefused --limit 20
      eventmail log --json --type MailboxReset | jq '.payload.removed'
      eventmail log --follow
    """
    now = datetime.now(UTC)
    filters = Filters(
        account=_account(account),
        types=_event_types(types),
        since=_bound("--since", since, now),
        until=_bound("--until", until, now),
    )
    render = json_line if as_json else table_line
    header_due = not as_json
    with reading_log(data) as event_log, _stop_on_sigterm():
        try:
            for page in matching(event_log.connection, filters, after, limit, follow):
                lines = [render(row) for row in page]
                if header_due:
                    lines.insert(0, TABLE_HEADER)
                    header_due = False
                click.echo("\n".join(lines))
        except (KeyboardInterrupt, _Stop):
            return
        except BrokenPipeError:
            _quiet_broken_pipe()
