"""The event-log contract, run against every backend, plus SQLite specifics.

Each backend fixture also knows how to reopen itself (a no-op for the memory
log, which lives only as long as its object) and how to build a "poison"
append: a real element that this backend cannot store, used to prove that a
batch is all-or-nothing.
"""

from __future__ import annotations

import hashlib
import itertools
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventmail.events import (
    AccountCreated,
    AccountRemoved,
    AuthenticationFailed,
    MailboxFetched,
    MessageAccepted,
    Recipient,
)
from eventmail.store import (
    EMPTY_HEAD,
    GENESIS_HASH,
    Append,
    Head,
    LogBusy,
    LogConflict,
    LogUnavailable,
    MemoryLog,
    SQLiteLog,
)
from eventmail.store.chain import verify_chain

POISON_LIMIT = 2000  # bytes; the SQLite backend is told to refuse longer values


def account(name: str) -> Append:
    return Append(AccountCreated(name=name, password_hash=f"scrypt$16$8$1$c2FsdA==${name}"))


def message(account_name: str, body: bytes, message_id: str = "q1") -> Append:
    event = MessageAccepted(
        message_id=message_id,
        mail_from="sender@example.org",
        recipients=(Recipient(account=account_name, address=f"{account_name}@localhost"),),
        peer="127.0.0.1:40000",
        helo="client.example.org",
        size=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
    )
    return Append(event, body)


def fetched(account_name: str, seq: int) -> Append:
    return Append(
        MailboxFetched(
            account=account_name, message_seq=seq, uidl=f"u{seq}", command="RETR", peer="::1:1"
        )
    )


@dataclass
class Backend:
    kind: str
    path: Path
    opened: list = field(default_factory=list)
    memory: MemoryLog | None = None

    def open(self):
        if self.kind == "memory":
            if self.memory is None:
                self.memory = MemoryLog()
            return self.memory
        log = SQLiteLog(self.path)
        self.opened.append(log)
        return log

    def reopen(self, log):
        if self.kind == "memory":
            return log
        log.close()
        return self.open()

    def poison(self, log) -> tuple[Append, type[Exception]]:
        """An append this backend refuses while storing the batch, and the error it raises."""
        if self.kind == "memory":
            # Not bytes: sealing cannot hash it.
            return Append(message("ann", b"x").event, 12345), TypeError  # type: ignore[arg-type]
        # A real insert failure in mid-batch: a BLOB above the connection's length limit.
        log.connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, POISON_LIMIT)
        return message("ann", b"x" * (POISON_LIMIT * 2)), LogUnavailable

    def close(self) -> None:
        for log in self.opened:
            log.close()


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    b = Backend(request.param, tmp_path / "events.db")
    yield b
    b.close()


@pytest.fixture
def log(backend: Backend):
    return backend.open()


def fill(log, n: int) -> list:
    return log.append([account(f"user{i}") for i in range(n)])


# --- ordering and sequence numbers --------------------------------------------


def test_empty_log(log) -> None:
    assert log.head() == EMPTY_HEAD
    assert log.head() == Head(0, GENESIS_HASH)
    assert list(log.read_after(0)) == []
    assert log.read(1) is None
    assert log.append([]) == []
    assert log.head() == EMPTY_HEAD


def test_seqs_are_gapless_from_one_across_batches(log) -> None:
    first = log.append([account("a"), account("b")])
    second = log.append([account("c")])
    third = log.append([account(f"d{i}") for i in range(5)])
    seqs = [r.seq for r in first + second + third]
    assert seqs == list(range(1, 9))
    assert [r.seq for r in log.read_after(0)] == seqs


def test_records_come_back_in_append_order_and_equal(log) -> None:
    appended = log.append([account("a"), message("a", b"hi\r\n"), account("b")])
    appended += log.append([fetched("a", 2)])
    stored = list(log.read_after(0))
    assert stored == appended
    assert [r.event for r in stored] == [
        AccountCreated(name="a", password_hash="scrypt$16$8$1$c2FsdA==$a"),
        message("a", b"hi\r\n").event,
        AccountCreated(name="b", password_hash="scrypt$16$8$1$c2FsdA==$b"),
        fetched("a", 2).event,
    ]
    assert [r.type for r in stored] == [
        "AccountCreated",
        "MessageAccepted",
        "AccountCreated",
        "MailboxFetched",
    ]
    assert [r.accounts for r in stored] == [("a",), ("a",), ("b",), ("a",)]


def test_head_follows_the_last_record(log) -> None:
    records = fill(log, 3)
    assert log.head() == Head(3, records[-1].hash)
    more = log.append([account("z")])
    assert log.head() == Head(4, more[0].hash)


def test_records_link_to_their_predecessor(log) -> None:
    records = fill(log, 4)
    assert records[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(records):
        assert after.prev_hash == before.hash


# --- reading --------------------------------------------------------------------


def test_read_after_a_seq(log) -> None:
    fill(log, 10)
    assert [r.seq for r in log.read_after(7)] == [8, 9, 10]
    assert [r.seq for r in log.read_after(10)] == []
    assert [r.seq for r in log.read_after(99)] == []
    assert [r.seq for r in log.read_after(-5)] == list(range(1, 11))


def test_read_after_with_limit(log) -> None:
    fill(log, 10)
    assert [r.seq for r in log.read_after(0, limit=3)] == [1, 2, 3]
    assert [r.seq for r in log.read_after(8, limit=5)] == [9, 10]
    assert [r.seq for r in log.read_after(0, limit=0)] == []


def test_read_after_many_pages(log) -> None:
    total = 700  # more than one SQLite read chunk
    fill(log, total)
    assert [r.seq for r in log.read_after(0)] == list(range(1, total + 1))
    assert [r.seq for r in log.read_after(100, limit=300)] == list(range(101, 401))


def test_read_after_filtered_by_type(log) -> None:
    log.append([account("a"), message("a", b"1"), account("b"), message("b", b"2")])
    log.append([Append(AccountRemoved(name="a")), fetched("b", 4)])
    assert [r.seq for r in log.read_after(0, types=["MessageAccepted"])] == [2, 4]
    assert [r.seq for r in log.read_after(2, types=["MessageAccepted"])] == [4]
    both = ["AccountCreated", "AccountRemoved"]
    assert [r.seq for r in log.read_after(0, types=both)] == [1, 3, 5]
    assert [r.seq for r in log.read_after(0, types=both, limit=2)] == [1, 3]
    assert list(log.read_after(0, types=["AuthenticationFailed"])) == []
    assert list(log.read_after(0, types=[])) == []


def test_read_one_seq(log) -> None:
    records = fill(log, 3)
    assert log.read(2) == records[1]
    assert log.read(0) is None
    assert log.read(4) is None
    assert log.read(-1) is None


# --- batches are all or nothing ---------------------------------------------------


def test_batch_with_a_bad_element_stores_nothing(backend: Backend, log) -> None:
    before = log.append([account("first")])
    poison, error = backend.poison(log)
    batch = [account("a"), message("a", b"ok"), poison, account("b")]
    with pytest.raises(error):
        log.append(batch)
    assert log.head() == Head(1, before[0].hash)
    assert list(log.read_after(0)) == before
    assert log.read(2) is None
    # The log is still usable and the next seq is the one the failed batch would have had.
    after = log.append([account("a")])
    assert after[0].seq == 2
    assert after[0].prev_hash == before[0].hash
    assert verify_chain(log.read_after(0)).ok


# --- content round-trips ------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"Subject: hi\r\n\r\nplain\r\n",
        bytes(range(256)),
        b"\x00\x00NUL at the start\x00 and the end\x00",
        "Grüße, ☃ 8-bit body\r\n".encode(),
        b"\xff\xfe not utf-8 \xc3\x28\r\n.\r\n",
        b"x" * 300_000,
    ],
    ids=["empty", "ascii", "all-bytes", "nul", "utf8", "invalid-utf8", "large"],
)
def test_message_bytes_round_trip_exactly(log, body: bytes) -> None:
    (record,) = log.append([message("a", body)])
    stored = log.read(record.seq)
    assert stored is not None
    assert type(stored.message) is bytes
    assert stored.message == body
    assert hashlib.sha256(stored.message).hexdigest() == stored.event.sha256


batches = st.lists(
    st.lists(
        st.one_of(
            st.builds(lambda body: message("ann", body), st.binary(max_size=600)),
            st.builds(account, st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True)),
        ),
        min_size=1,
        max_size=6,
    ),
    max_size=6,
)


@settings(max_examples=40, deadline=None)
@given(script=batches)
def test_any_batches_read_back_equal_and_chained(
    tmp_path_factory: pytest.TempPathFactory, script: list[list[Append]]
) -> None:
    for log in (MemoryLog(), SQLiteLog(tmp_path_factory.mktemp("prop") / "events.db")):
        try:
            appended = [record for batch in script for record in log.append(batch)]
            stored = list(log.read_after(0))
            assert stored == appended
            assert [r.seq for r in stored] == list(range(1, len(appended) + 1))
            flat = [item for batch in script for item in batch]
            assert [r.event for r in stored] == [item.event for item in flat]
            assert [r.message for r in stored] == [item.message for item in flat]
            assert verify_chain(stored).head == log.head()
            assert verify_chain(stored).ok
        finally:
            log.close()


def test_event_without_message_has_none(log) -> None:
    (record,) = log.append([account("a")])
    assert record.message is None
    stored = log.read(1)
    assert stored is not None and stored.message is None


def test_unicode_fields_round_trip(log) -> None:
    event = AuthenticationFailed(protocol="pop3", user="jörg\u2603\x00tab\t", peer="[::1]:5")
    (record,) = log.append([Append(event)])
    stored = log.read(record.seq)
    assert stored is not None
    assert stored.event == event
    assert stored.payload == record.payload


def test_appended_chain_verifies(log) -> None:
    log.append([account("a"), message("a", b"one\r\n")])
    log.append([message("a", bytes(range(256)), "q2")])
    log.append([fetched("a", 2), Append(AccountRemoved(name="a"))])
    result = verify_chain(log.read_after(0))
    assert result.ok, result.error
    assert result.head == log.head()
    third = log.read(3)
    assert third is not None
    assert verify_chain(log.read_after(0), expect=Head(3, third.hash)).ok
    assert not verify_chain(log.read_after(0), expect=Head(3, "f" * 64)).ok


def test_reopening_keeps_state(backend: Backend, log) -> None:
    first = log.append([account("a"), message("a", b"\x00body\xff")])
    log = backend.reopen(log)
    assert log.head() == Head(2, first[-1].hash)
    assert list(log.read_after(0)) == first
    more = log.append([account("b")])
    assert more[0].seq == 3
    assert more[0].prev_hash == first[-1].hash
    assert verify_chain(log.read_after(0)).ok


# --- SQLite specifics ------------------------------------------------------------------


@pytest.fixture
def sqlite_log(tmp_path: Path) -> Iterator[SQLiteLog]:
    log = SQLiteLog(tmp_path / "events.db")
    yield log
    log.close()


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def test_sqlite_uses_wal_and_full_sync(sqlite_log: SQLiteLog) -> None:
    conn = sqlite_log.connection
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_sqlite_wal_mode_is_persistent(sqlite_log: SQLiteLog) -> None:
    other = raw(sqlite_log.path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET payload = '{}' WHERE seq = 1",
        "UPDATE events SET seq = 5 WHERE seq = 2",
        "DELETE FROM events WHERE seq = 2",
        "DELETE FROM events",
        "UPDATE event_accounts SET account = 'mallory'",
        "DELETE FROM event_accounts",
    ],
)
def test_sqlite_refuses_update_and_delete(sqlite_log: SQLiteLog, statement: str) -> None:
    records = sqlite_log.append([account("a"), message("a", b"m")])
    conn = raw(sqlite_log.path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM event_accounts").fetchone()[0] == 2
    finally:
        conn.close()
    assert list(sqlite_log.read_after(0)) == records


@pytest.mark.parametrize("seq", [1, 3, 4, 100, 0, -1])
def test_sqlite_refuses_insert_with_wrong_seq(sqlite_log: SQLiteLog, seq: int) -> None:
    (record,) = sqlite_log.append([account("a")])
    conn = raw(sqlite_log.path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="gapless"):
            conn.execute(
                "INSERT INTO events (seq, ts, type, accounts, payload, message, prev_hash, hash)"
                " VALUES (?, ?, 'AccountCreated', '[]', '{}', NULL, ?, 'x')",
                (seq, record.ts, record.hash),
            )
    finally:
        conn.close()
    assert sqlite_log.head().seq == 1


def test_sqlite_accepts_insert_with_the_next_seq(sqlite_log: SQLiteLog) -> None:
    """The gapless trigger refuses only wrong seqs (the chain catches forged rows)."""
    (record,) = sqlite_log.append([account("a")])
    conn = raw(sqlite_log.path)
    try:
        conn.execute(
            "INSERT INTO events (seq, ts, type, accounts, payload, message, prev_hash, hash)"
            " VALUES (2, ?, 'AccountCreated', '[]', '{}', NULL, ?, 'forged')",
            (record.ts, record.hash),
        )
    finally:
        conn.close()
    result = verify_chain(sqlite_log.read_after(0))
    assert not result.ok
    assert result.error is not None and result.error.seq == 2


def test_sqlite_payload_is_queryable_json(sqlite_log: SQLiteLog) -> None:
    sqlite_log.append([account("ann"), message("ann", b"hello\r\n", "q7")])
    conn = raw(sqlite_log.path)
    try:
        rows = conn.execute(
            "SELECT seq, json_extract(payload, '$.message_id'),"
            " json_extract(payload, '$.recipients[0].account'), json_extract(payload, '$.size')"
            " FROM events WHERE type = 'MessageAccepted'"
        ).fetchall()
        assert rows == [(2, "q7", "ann", 7)]
        names = conn.execute(
            "SELECT json_extract(payload, '$.name') FROM events WHERE type = 'AccountCreated'"
        ).fetchall()
        assert names == [("ann",)]
        by_account = conn.execute(
            "SELECT seq FROM event_accounts WHERE account = 'ann' ORDER BY seq"
        ).fetchall()
        assert by_account == [(1,), (2,)]
        assert conn.execute("SELECT account, size FROM deliveries").fetchall() == [("ann", 7)]
    finally:
        conn.close()


def test_sqlite_busy_writer_makes_append_raise_log_busy(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    log = SQLiteLog(path, busy_timeout=0.05)
    log.append([account("a")])
    holder = raw(path)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(LogBusy):
            log.append([account("b"), account("c")])
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    assert log.head().seq == 1
    assert [r.event.name for r in log.read_after(0)] == ["a"]
    (record,) = log.append([account("b")])
    assert record.seq == 2
    log.close()


def test_sqlite_mid_batch_insert_failure_is_log_unavailable(sqlite_log: SQLiteLog) -> None:
    sqlite_log.connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, POISON_LIMIT)
    with pytest.raises(LogUnavailable, match="too big"):
        sqlite_log.append([account("a"), message("a", b"y" * POISON_LIMIT * 2)])
    assert sqlite_log.head() == EMPTY_HEAD
    conn = raw(sqlite_log.path)
    try:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM event_accounts").fetchone() == (0,)
    finally:
        conn.close()


def test_sqlite_readonly_log_reads_but_cannot_append(sqlite_log: SQLiteLog) -> None:
    records = sqlite_log.append([account("a")])
    reader = SQLiteLog(sqlite_log.path, readonly=True)
    try:
        assert list(reader.read_after(0)) == records
        with pytest.raises(LogUnavailable):
            reader.append([account("b")])
    finally:
        reader.close()
    assert sqlite_log.head().seq == 1


def test_sqlite_clock_sets_the_timestamp(tmp_path: Path) -> None:
    log = SQLiteLog(tmp_path / "events.db", clock=lambda: "2026-01-02T03:04:05.000006Z")
    try:
        (record,) = log.append([account("a")])
        assert record.ts == "2026-01-02T03:04:05.000006Z"
        assert log.read(1) == record
    finally:
        log.close()


def test_sqlite_second_connection_sees_committed_appends(sqlite_log: SQLiteLog) -> None:
    other = SQLiteLog(sqlite_log.path)
    try:
        records = sqlite_log.append([account("a"), account("b")])
        assert list(other.read_after(0)) == records
        more = other.append([account("c")])
        assert more[0].seq == 3 and more[0].prev_hash == records[-1].hash
        assert sqlite_log.head() == Head(3, more[0].hash)
    finally:
        other.close()


def test_sqlite_open_while_another_connection_holds_a_fresh_file(tmp_path: Path) -> None:
    """Switching a new file to WAL needs it unlocked: a clear LogBusy, not a raw error."""
    path = tmp_path / "events.db"
    holder = raw(path)
    try:
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("CREATE TABLE scratch (x)")
        with pytest.raises(LogBusy, match="locked"):
            SQLiteLog(path, busy_timeout=0.05)
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    log = SQLiteLog(path, busy_timeout=0.05)
    try:
        assert log.connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert log.append([account("a")])[0].seq == 1
    finally:
        log.close()


def test_sqlite_open_of_an_unusable_path_is_log_unavailable(tmp_path: Path) -> None:
    (tmp_path / "events.db").write_bytes(b"this is not a database, just some text" * 100)
    with pytest.raises(LogUnavailable):
        SQLiteLog(tmp_path / "events.db")


def test_append_with_expected_seq_refuses_a_moved_head(log) -> None:
    fill(log, 2)
    with pytest.raises(LogConflict):
        log.append([account("late")], expect_seq=1)
    assert log.head().seq == 2
    (record,) = log.append([account("ontime")], expect_seq=2)
    assert record.seq == 3
