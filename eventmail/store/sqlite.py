"""The SQLite event log: WAL, synchronous=FULL, append-only by trigger.

One connection per ``SQLiteLog``; a lock makes it safe to hand between threads,
but the server uses each instance from one place (the group committer, or a
reader). Any number of processes may open the same file: ``append`` takes the
write lock with ``BEGIN IMMEDIATE`` and reads the head inside that transaction,
so the chain never forks.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import msgspec

from eventmail.store.base import (
    EMPTY_HEAD,
    Append,
    Head,
    LogBusy,
    LogConflict,
    LogUnavailable,
    Record,
    utc_now,
)
from eventmail.store.chain import seal

SCHEMA_VERSION = 1
READ_CHUNK = 256

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq       INTEGER PRIMARY KEY,   -- 1, 2, 3, ... no gaps
    ts        TEXT NOT NULL,         -- UTC, microseconds, ISO 8601
    type      TEXT NOT NULL,         -- event name, e.g. MessageAccepted
    accounts  TEXT NOT NULL,         -- JSON array of account names it concerns
    payload   TEXT NOT NULL,         -- JSON of the event (query with json_extract)
    message   BLOB,                  -- raw message bytes, for MessageAccepted
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_type ON events (type, seq);
CREATE INDEX IF NOT EXISTS events_by_ts ON events (ts);

-- One row per (account, event): makes --account filters and per-account views cheap.
CREATE TABLE IF NOT EXISTS event_accounts (
    account TEXT NOT NULL,
    seq     INTEGER NOT NULL REFERENCES events (seq),
    PRIMARY KEY (account, seq)
) WITHOUT ROWID;

CREATE TRIGGER IF NOT EXISTS events_append_only_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS events_append_only_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only: DELETE refused'); END;
CREATE TRIGGER IF NOT EXISTS events_gapless BEFORE INSERT ON events
WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM events)
BEGIN SELECT RAISE(ABORT, 'events are gapless: seq must be the next number'); END;
CREATE TRIGGER IF NOT EXISTS event_accounts_append_only_update BEFORE UPDATE ON event_accounts
BEGIN SELECT RAISE(ABORT, 'event_accounts is append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS event_accounts_append_only_delete BEFORE DELETE ON event_accounts
BEGIN SELECT RAISE(ABORT, 'event_accounts is append-only: DELETE refused'); END;

-- Views for the questions operators ask.
CREATE VIEW IF NOT EXISTS messages AS
SELECT seq, ts,
       json_extract(payload, '$.message_id') AS message_id,
       json_extract(payload, '$.mail_from') AS mail_from,
       (SELECT group_concat(json_extract(r.value, '$.account'), ',')
          FROM json_each(payload, '$.recipients') AS r) AS recipients,
       json_extract(payload, '$.size') AS size,
       json_extract(payload, '$.peer') AS peer,
       json_extract(payload, '$.helo') AS helo,
       json_extract(payload, '$.sha256') AS sha256
FROM events WHERE type = 'MessageAccepted';

CREATE VIEW IF NOT EXISTS deliveries AS
SELECT e.seq, e.ts,
       json_extract(r.value, '$.account') AS account,
       json_extract(r.value, '$.address') AS address,
       json_extract(e.payload, '$.mail_from') AS mail_from,
       json_extract(e.payload, '$.message_id') AS message_id,
       json_extract(e.payload, '$.size') AS size
FROM events AS e, json_each(e.payload, '$.recipients') AS r
WHERE e.type = 'MessageAccepted';

CREATE VIEW IF NOT EXISTS mailbox_activity AS
SELECT a.account,
       SUM(e.type = 'MessageAccepted') AS received,
       SUM(e.type = 'MailboxFetched') AS fetched,
       SUM(e.type = 'MailboxReset') AS resets,
       MAX(CASE WHEN e.type = 'MessageAccepted' THEN e.ts END) AS last_received,
       MAX(CASE WHEN e.type IN ('MailboxFetched', 'MailboxReset') THEN e.ts END) AS last_fetched,
       MAX(e.ts) AS last_activity
FROM event_accounts AS a JOIN events AS e ON e.seq = a.seq
GROUP BY a.account;

CREATE VIEW IF NOT EXISTS refusals AS
SELECT seq, ts, type,
       json_extract(payload, '$.reason') AS reason,
       COALESCE(json_extract(payload, '$.address'), json_extract(payload, '$.user')) AS target,
       json_extract(payload, '$.mail_from') AS mail_from,
       json_extract(payload, '$.peer') AS peer
FROM events
WHERE type IN ('RecipientRefused', 'MessageRefused', 'AuthenticationFailed');
"""


def _is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class SQLiteLog:
    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout: float = 5.0,
        readonly: bool = False,
        clock: Callable[[], str] = utc_now,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._own_commits = 0
        if readonly:
            uri = f"file:{self.path}?mode=ro"
            self._conn = sqlite3.connect(
                uri, uri=True, isolation_level=None, check_same_thread=False, timeout=busy_timeout
            )
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=busy_timeout
            )
        self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        if not readonly:
            try:
                self._enable_wal(busy_timeout)
                self._conn.execute("PRAGMA synchronous = FULL")
                self._create_schema()
            except BaseException:
                self._conn.close()
                raise

    def _enable_wal(self, busy_timeout: float) -> None:
        """Switch to WAL, retrying while another process is creating the same file.

        SQLite does not call the busy handler for this change, so two processes
        opening a fresh log at once would otherwise fail with "database is locked".
        """
        deadline = time.monotonic() + busy_timeout
        delay = 0.001
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.Error as exc:
                if not _is_busy(exc):
                    raise LogUnavailable(str(exc)) from exc
                if time.monotonic() >= deadline:
                    raise LogBusy(str(exc)) from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _create_schema(self) -> None:
        try:
            (version,) = self._conn.execute("PRAGMA user_version").fetchone()
            if version == SCHEMA_VERSION:
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(SCHEMA):
                    self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise (LogBusy if _is_busy(exc) else LogUnavailable)(str(exc)) from exc

    # --- writing ---------------------------------------------------------------

    def append(self, batch: Sequence[Append], *, expect_seq: int | None = None) -> list[Record]:
        if not batch:
            return []
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise (LogBusy if _is_busy(exc) else LogUnavailable)(str(exc)) from exc
            try:
                head = self._head()
                if expect_seq is not None and head.seq != expect_seq:
                    raise LogConflict(f"the log is at seq {head.seq}, not {expect_seq}")
                records = seal(((a.event, a.message) for a in batch), head, self._clock())
                self._conn.executemany(
                    "INSERT INTO events"
                    " (seq, ts, type, accounts, payload, message, prev_hash, hash)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            r.seq,
                            r.ts,
                            r.type,
                            json.dumps(list(r.accounts)),
                            r.payload.decode("utf-8"),
                            r.message,
                            r.prev_hash,
                            r.hash,
                        )
                        for r in records
                    ],
                )
                self._conn.executemany(
                    "INSERT INTO event_accounts (account, seq) VALUES (?, ?)",
                    [(account, r.seq) for r in records for account in r.accounts],
                )
                self._conn.execute("COMMIT")
                self._own_commits += 1
            except BaseException as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise (LogBusy if _is_busy(exc) else LogUnavailable)(str(exc)) from exc
                raise
            return records

    # --- reading ---------------------------------------------------------------

    def read_after(
        self, seq: int, *, limit: int | None = None, types: Iterable[str] | None = None
    ) -> Iterator[Record]:
        type_list = None if types is None else list(types)
        remaining = limit
        while remaining is None or remaining > 0:
            chunk = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
            sql = f"SELECT {_COLUMNS} FROM events WHERE seq > ?"
            params: list[object] = [seq]
            if type_list is not None:
                sql += f" AND type IN ({','.join('?' * len(type_list))})"
                params.extend(type_list)
            sql += " ORDER BY seq LIMIT ?"
            params.append(chunk)
            with self._lock:
                rows = self._conn.execute(sql, params).fetchall()
            for row in rows:
                yield _record(row)
            if len(rows) < chunk:
                return
            seq = rows[-1][0]
            if remaining is not None:
                remaining -= len(rows)

    def read(self, seq: int) -> Record | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE seq = ?", (seq,)
            ).fetchone()
        return None if row is None else _record(row)

    def head(self) -> Head:
        with self._lock:
            return self._head()

    def _head(self) -> Head:
        row = self._conn.execute(
            "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return EMPTY_HEAD if row is None else Head(row[0], row[1])

    def change_token(self) -> tuple[int, int]:
        """Changes whenever anyone commits: a cheap test before re-reading the head.

        ``PRAGMA data_version`` moves on commits by other connections (any
        process); this connection's own commits are counted here.
        """
        with self._lock:
            (version,) = self._conn.execute("PRAGMA data_version").fetchone()
            return version, self._own_commits

    @property
    def connection(self) -> sqlite3.Connection:
        """The raw connection, for read-only queries (CLI filters, views)."""
        return self._conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()


_decode_accounts = msgspec.json.Decoder(tuple[str, ...]).decode
_COLUMNS = "seq, ts, type, accounts, payload, message, prev_hash, hash"


def _record(row: tuple) -> Record:
    seq, ts, type_, accounts, payload, message, prev_hash, hash_ = row
    return Record(
        seq=seq,
        ts=ts,
        type=type_,
        accounts=_decode_accounts(accounts),
        payload=payload.encode("utf-8") if isinstance(payload, str) else bytes(payload),
        message=None if message is None else bytes(message),
        prev_hash=prev_hash,
        hash=hash_,
    )


def _statements(script: str) -> list[str]:
    """Split the schema script into statements (triggers hold inner semicolons)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return statements
