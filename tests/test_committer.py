"""Group commit: batching, wake-after-commit, failures, cancellation, shutdown."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio
import trio.testing

from eventmail.events import AccountCreated, MailboxFetched
from eventmail.store import (
    Append,
    LogBusy,
    LogUnavailable,
    LogWriteError,
    MemoryLog,
    Record,
    SQLiteLog,
)
from eventmail.store import committer as committer_module
from eventmail.store.chain import verify_chain
from eventmail.store.committer import GroupCommitter


def fetched(n: int) -> MailboxFetched:
    return MailboxFetched(account="ann", message_seq=n, uidl=f"u{n}", command="RETR", peer="x")


def created(name: str) -> AccountCreated:
    return AccountCreated(name=name, password_hash="scrypt$16$8$1$c2FsdA==$aGFzaA==")


class GatedLog:
    """Wraps a log: each append waits for ``gate`` and may fail on purpose.

    ``failures`` maps the index of an append call (0, 1, ...) to the exception
    that call raises instead of storing anything.
    """

    def __init__(self, inner: MemoryLog, failures: dict[int, Exception] | None = None) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.gate.set()
        self.failures = failures or {}
        self.batches: list[int] = []

    def append(self, batch: Sequence[Append]) -> list[Record]:
        call = len(self.batches)
        self.batches.append(len(batch))
        if not self.gate.wait(timeout=30):  # a guard against hanging a broken test run
            raise RuntimeError("gate never opened")
        if call in self.failures:
            raise self.failures[call]
        return self.inner.append(batch)

    def read_after(self, seq: int, **kw):  # type: ignore[no-untyped-def]
        return self.inner.read_after(seq, **kw)

    def read(self, seq: int) -> Record | None:
        return self.inner.read(seq)

    def head(self):  # type: ignore[no-untyped-def]
        return self.inner.head()

    def close(self) -> None:
        pass


def names(log: MemoryLog | GatedLog) -> list[str]:
    return [r.event.name for r in log.read_after(0)]  # type: ignore[attr-defined]


# --- batching and wake-after-commit ---------------------------------------------------


async def test_500_concurrent_appends_are_batched_and_woken_after_commit(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    writer = SQLiteLog(path)
    # A second connection sees only what is committed: reading each record back
    # through it at wake-up time proves the caller was not woken early.
    reader = SQLiteLog(path)
    committer = GroupCommitter(writer)
    seqs: list[int] = []
    seen_at_wake: list[bool] = []

    async def appender(n: int) -> None:
        record = await committer.append(fetched(n))
        seen_at_wake.append(reader.read(record.seq) == record)
        seqs.append(record.seq)

    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        async with trio.open_nursery() as appenders:
            for n in range(500):
                appenders.start_soon(appender, n)
        nursery.cancel_scope.cancel()

    assert sorted(seqs) == list(range(1, 501))
    assert len(seen_at_wake) == 500 and all(seen_at_wake)
    stats = committer.statistics()
    assert stats.appends == 500
    assert stats.failed_transactions == 0
    assert stats.transactions <= 50  # far fewer transactions than appends
    assert stats.largest_batch > 1
    assert stats.queued == 0
    assert sorted(r.event.message_seq for r in reader.read_after(0)) == list(range(500))
    assert verify_chain(reader.read_after(0)).ok
    writer.close()
    reader.close()


def test_a_second_connection_does_not_see_uncommitted_rows(tmp_path: Path) -> None:
    """The check above is meaningful: an open transaction is invisible to the reader."""
    path = tmp_path / "events.db"
    writer = SQLiteLog(path)
    reader = SQLiteLog(path)
    (first,) = writer.append([Append(fetched(1))])
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO events (seq, ts, type, accounts, payload, message, prev_hash, hash)"
            " VALUES (2, ?, 'MailboxFetched', '[]', '{}', NULL, ?, 'h')",
            (first.ts, first.hash),
        )
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (2,)
        assert reader.read(2) is None
        assert reader.head().seq == 1
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    writer.close()
    reader.close()


async def test_message_bytes_pass_through() -> None:
    log = MemoryLog()
    committer = GroupCommitter(log)
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        record = await committer.append(fetched(1), b"\x00\xffraw")
        nursery.cancel_scope.cancel()
    assert record.message == b"\x00\xffraw"
    stored = log.read(1)
    assert stored is not None and stored.message == b"\x00\xffraw"


async def test_inline_commits_leave_a_mock_clock_alone(autojump_clock: trio.abc.Clock) -> None:
    """With in_thread=False no worker thread runs, so virtual time cannot jump mid-commit."""
    committer = GroupCommitter(MemoryLog(), in_thread=False)
    seqs: list[int] = []

    async def appender(n: int) -> None:
        for i in range(5):
            seqs.append((await committer.append(fetched(n * 5 + i))).seq)

    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        start = trio.current_time()
        with trio.move_on_after(1) as timer:
            async with trio.open_nursery() as appenders:
                for n in range(20):
                    appenders.start_soon(appender, n)
        assert not timer.cancelled_caught
        assert trio.current_time() == start
        nursery.cancel_scope.cancel()
    assert sorted(seqs) == list(range(1, 101))
    assert committer.statistics().largest_batch > 1


# --- failures ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (LogBusy("database is locked"), LogBusy),
        (LogUnavailable("disk I/O error"), LogUnavailable),
    ],
    ids=["busy", "unavailable"],
)
async def test_failed_batch_fails_every_caller_and_the_committer_goes_on(
    failure: Exception, expected: type[LogWriteError]
) -> None:
    log = GatedLog(MemoryLog(), failures={1: failure})
    committer = GroupCommitter(log)
    results: dict[str, Record | LogWriteError] = {}

    async def caller(name: str) -> None:
        try:
            results[name] = await committer.append(created(name))
        except LogWriteError as exc:
            results[name] = exc

    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        log.gate.clear()
        async with trio.open_nursery() as callers:
            callers.start_soon(caller, "first")
            await trio.testing.wait_all_tasks_blocked()  # "first" is being committed
            for i in range(10):
                callers.start_soon(caller, f"b{i}")
            await trio.testing.wait_all_tasks_blocked()  # the ten are queued behind it
            log.gate.set()
        later = await committer.append(created("later"))
        nursery.cancel_scope.cancel()

    assert log.batches == [1, 10, 1]
    first = results["first"]
    assert isinstance(first, Record) and first.seq == 1
    errors = [results[f"b{i}"] for i in range(10)]
    assert all(isinstance(e, expected) for e in errors)
    assert later.seq == 2 and later.prev_hash == first.hash
    assert names(log) == ["first", "later"]
    stats = committer.statistics()
    assert (stats.appends, stats.transactions, stats.failed_transactions) == (2, 2, 1)
    assert stats.largest_batch == 1


async def test_a_bad_event_fails_only_its_own_caller() -> None:
    log = GatedLog(MemoryLog())
    committer = GroupCommitter(log)
    results: dict[str, Record | LogWriteError] = {}
    # Not encodable: the payload cannot be serialized, so sealing the batch fails.
    bad = AccountCreated(name="bad", password_hash=object())  # type: ignore[arg-type]

    async def caller(name: str) -> None:
        try:
            results[name] = await committer.append(bad if name == "bad" else created(name))
        except LogWriteError as exc:
            results[name] = exc

    good = [f"g{i}" for i in range(9)]
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        log.gate.clear()
        async with trio.open_nursery() as callers:
            callers.start_soon(caller, "first")
            await trio.testing.wait_all_tasks_blocked()
            for name in [*good[:4], "bad", *good[4:]]:
                callers.start_soon(caller, name)
                await trio.testing.wait_all_tasks_blocked()  # keep the queue in this order
            log.gate.set()
        nursery.cancel_scope.cancel()

    # The batch of ten failed as a whole, then each was committed on its own.
    assert log.batches == [1, 10] + [1] * 10
    error = results["bad"]
    assert isinstance(error, LogUnavailable) and "TypeError" in str(error)
    assert names(log) == ["first", *good]
    assert [results[name].seq for name in good] == list(range(2, 11))  # type: ignore[union-attr]
    stats = committer.statistics()
    assert (stats.appends, stats.transactions, stats.failed_transactions) == (10, 10, 2)
    assert verify_chain(log.read_after(0)).ok


class BrokenLog(MemoryLog):
    def append(self, batch: Sequence[Append]) -> list[Record]:
        raise RuntimeError("backend bug")


async def test_a_broken_backend_fails_every_caller_without_hanging() -> None:
    log = BrokenLog()
    committer = GroupCommitter(log)
    errors: list[LogWriteError] = []

    async def caller(n: int) -> None:
        with pytest.raises(LogUnavailable, match="RuntimeError: backend bug") as info:
            await committer.append(fetched(n))
        errors.append(info.value)

    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        async with trio.open_nursery() as callers:
            for n in range(20):
                callers.start_soon(caller, n)
        await caller(20)  # the committer is still there
        nursery.cancel_scope.cancel()
    assert len(errors) == 21
    assert log.head().seq == 0
    assert committer.statistics().appends == 0


# --- cancellation and shutdown ------------------------------------------------------------


async def test_cancelled_callers_are_neither_lost_nor_doubled() -> None:
    log = GatedLog(MemoryLog())
    committer = GroupCommitter(log, queue_size=1)
    outcome: dict[str, object] = {}
    scopes: dict[str, trio.CancelScope] = {}

    async def caller(name: str) -> None:
        with trio.CancelScope() as scope:
            scopes[name] = scope
            outcome[name] = "waiting"
            outcome[name] = await committer.append(created(name))
            await trio.lowlevel.checkpoint()
            outcome[name] = "not cancelled"
            return
        if outcome[name] == "waiting":
            outcome[name] = "cancelled before queueing"

    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        log.gate.clear()
        async with trio.open_nursery() as callers:
            callers.start_soon(caller, "a")  # taken by the committer, commit in progress
            await trio.testing.wait_all_tasks_blocked()
            callers.start_soon(caller, "b")  # queued in the channel's one slot
            await trio.testing.wait_all_tasks_blocked()
            callers.start_soon(caller, "c")  # blocked: the queue is full
            await trio.testing.wait_all_tasks_blocked()
            assert committer.statistics().queued == 1
            scopes["b"].cancel()
            scopes["c"].cancel()
            await trio.testing.wait_all_tasks_blocked()
            log.gate.set()
        d = await committer.append(created("d"))
        nursery.cancel_scope.cancel()

    assert names(log) == ["a", "b", "d"]
    assert d.seq == 3
    assert outcome["a"] == "not cancelled"
    # b was queued before its cancellation: it still learnt its record.
    b = outcome["b"]
    assert isinstance(b, Record) and b.seq == 2 and b.event == created("b")
    assert outcome["c"] == "cancelled before queueing"
    assert verify_chain(log.read_after(0)).ok


async def test_stopping_the_committer_finishes_the_batch_and_fails_the_queue() -> None:
    log = GatedLog(MemoryLog())
    committer = GroupCommitter(log)
    results: dict[str, object] = {}

    async def caller(name: str) -> None:
        try:
            results[name] = await committer.append(created(name))
        except LogWriteError as exc:
            results[name] = exc

    async with trio.open_nursery() as outer:
        async with trio.open_nursery() as run_scope:
            await run_scope.start(committer.run)
            log.gate.clear()
            outer.start_soon(caller, "inflight")
            await trio.testing.wait_all_tasks_blocked()
            outer.start_soon(caller, "queued1")
            outer.start_soon(caller, "queued2")
            await trio.testing.wait_all_tasks_blocked()
            run_scope.cancel_scope.cancel()
            log.gate.set()
        # The committer has stopped; a new append fails at once instead of hanging.
        with pytest.raises(LogUnavailable):
            await committer.append(created("late"))

    inflight = results["inflight"]
    assert isinstance(inflight, Record) and inflight.seq == 1
    assert isinstance(results["queued1"], LogUnavailable)
    assert isinstance(results["queued2"], LogUnavailable)
    assert names(log) == ["inflight"]


@pytest.mark.parametrize("in_thread", [True, False])
async def test_a_batch_taken_just_before_shutdown_is_still_committed(in_thread: bool) -> None:
    """The committer can be told to stop after it took a batch but before committing it.

    White-box: the append is handed straight to the waiting committer and the stop
    is requested before the committer runs again, which no public call can time.
    """
    log = MemoryLog()
    committer = GroupCommitter(log, in_thread=in_thread)
    pending = committer_module.Receipt(Append(created("a")))
    async with trio.open_nursery() as run_nursery:
        await run_nursery.start(committer.run)
        await trio.testing.wait_all_tasks_blocked()  # the committer waits for appends
        committer._send.send_nowait(pending)  # wakes it holding this append...
        run_nursery.cancel_scope.cancel()  # ...and tells it to stop before it runs
    assert pending.settled
    assert pending.error is None
    assert pending.record is not None and pending.record.seq == 1
    assert names(log) == ["a"]


async def test_submit_returns_before_the_commit_and_keeps_queue_order() -> None:
    log = MemoryLog()
    committer = GroupCommitter(log, in_thread=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        first = await committer.submit(created("a"))
        second = await committer.submit(created("b"))
        # Nothing has been committed yet: submit does not wait for the committer.
        assert not first.settled and not second.settled and names(log) == []
        assert (await second.result()).seq == 2
        assert first.durable and (await first.result()).seq == 1
        assert names(log) == ["a", "b"]
        nursery.cancel_scope.cancel()
