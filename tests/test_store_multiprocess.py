"""Several OS processes appending to one events.db, and noticing each other's appends."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import trio
import trio.testing

from eventmail.events import AccountCreated, MailboxFetched
from eventmail.store import GENESIS_HASH, Append, Head, MemoryLog, SQLiteLog
from eventmail.store.chain import verify_chain
from eventmail.store.committer import GroupCommitter
from eventmail.store.watch import HeadWatcher, wait_for_head_change

# A writer process: opens the log, says "ready", waits for "go" on stdin, then
# appends N events one transaction each and prints the seqs it was given. It
# pauses briefly between appends, as separate CLI runs would: SQLite's write lock
# is not fair, and a writer that never pauses keeps it until it is done.
WRITER = """
import json, sys, time
from eventmail.events import MailboxFetched
from eventmail.store import Append, SQLiteLog
path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
log = SQLiteLog(path, busy_timeout=60)
print("ready", flush=True)
sys.stdin.readline()
seqs = []
for i in range(n):
    event = MailboxFetched(account=tag, message_seq=i, uidl=tag, command="RETR", peer="p")
    seqs.extend(r.seq for r in log.append([Append(event)]))
    time.sleep(0.0005)
log.close()
print(json.dumps(seqs), flush=True)
"""

# Creates one account in another process.
CREATOR = """
import sys
from eventmail.events import AccountCreated
from eventmail.store import Append, SQLiteLog
log = SQLiteLog(sys.argv[1])
log.append([Append(AccountCreated(name=sys.argv[2], password_hash="scrypt$1$1$1$AA==$AA=="))])
log.close()
"""

# Opens (and so creates) the log the moment it reads "go", then appends one event.
OPENER = """
import sys
from eventmail.events import AccountCreated
from eventmail.store import Append, SQLiteLog
print("ready", flush=True)
sys.stdin.readline()
log = SQLiteLog(sys.argv[1])
log.append([Append(AccountCreated(name=sys.argv[2], password_hash="scrypt$1$1$1$AA==$AA=="))])
log.close()
"""

PER_PROCESS = 150
TRIO_TASKS, PER_TASK = 10, 15
IN_TRIO = TRIO_TASKS * PER_TASK


def fetched(tag: str, i: int) -> MailboxFetched:
    return MailboxFetched(account=tag, message_seq=i, uidl=tag, command="RETR", peer="p")


async def read_line(stream: trio.abc.ReceiveStream, buffer: bytearray) -> bytes:
    while b"\n" not in buffer:
        chunk = await stream.receive_some()
        if not chunk:
            raise EOFError("the writer process ended early")
        buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line


async def read_all(stream: trio.abc.ReceiveStream, buffer: bytearray) -> bytes:
    while chunk := await stream.receive_some():
        buffer += chunk
    return bytes(buffer)


async def test_two_processes_and_the_committer_append_at_once(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    log = SQLiteLog(path, busy_timeout=60)  # creates the schema before anyone races
    committer = GroupCommitter(log)
    tags = ["proc1", "proc2"]
    procs = [
        await trio.lowlevel.open_process(
            [sys.executable, "-c", WRITER, str(path), tag, str(PER_PROCESS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for tag in tags
    ]
    buffers = [bytearray() for _ in procs]
    child_seqs: dict[str, list[int]] = {}
    trio_seqs: list[int] = []

    async def collect(i: int) -> None:
        proc = procs[i]
        assert proc.stdout is not None
        out = await read_all(proc.stdout, buffers[i])
        assert await proc.wait() == 0
        child_seqs[tags[i]] = json.loads(out)

    async def append_in_trio(task: int) -> None:
        for i in range(task * PER_TASK, (task + 1) * PER_TASK):
            trio_seqs.append((await committer.append(fetched("trio", i))).seq)

    try:
        with trio.fail_after(120):  # a guard against a hung child, not a timing assertion
            for i, proc in enumerate(procs):
                assert proc.stdout is not None
                assert await read_line(proc.stdout, buffers[i]) == b"ready"
            async with trio.open_nursery() as nursery:
                await nursery.start(committer.run)
                for proc in procs:
                    assert proc.stdin is not None
                    await proc.stdin.send_all(b"go\n")
                async with trio.open_nursery() as work:
                    for i in range(len(procs)):
                        work.start_soon(collect, i)
                    for task in range(TRIO_TASKS):
                        work.start_soon(append_in_trio, task)
                nursery.cancel_scope.cancel()
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    total = 2 * PER_PROCESS + IN_TRIO
    records = list(log.read_after(0))
    assert [r.seq for r in records] == list(range(1, total + 1))
    by_tag: dict[str, list[int]] = {}
    for record in records:
        by_tag.setdefault(record.event.account, []).append(record.seq)
    assert by_tag == {
        "proc1": sorted(child_seqs["proc1"]),
        "proc2": sorted(child_seqs["proc2"]),
        "trio": sorted(trio_seqs),
    }
    for tag, count in (("proc1", PER_PROCESS), ("proc2", PER_PROCESS), ("trio", IN_TRIO)):
        numbers = [r.event.message_seq for r in records if r.event.account == tag]
        assert sorted(numbers) == list(range(count))
    # Each process appended its own events in order.
    for tag in tags:
        numbers = [r.event.message_seq for r in records if r.event.account == tag]
        assert numbers == list(range(PER_PROCESS))
    result = verify_chain(records)
    assert result.ok, result.error
    assert result.head == log.head()
    log.close()


async def test_processes_creating_a_fresh_log_at_once_all_succeed(tmp_path: Path) -> None:
    """Two processes may be first to open a new events.db (serve and the CLI)."""
    rounds, openers = 3, 4
    for round_ in range(rounds):
        path = tmp_path / f"fresh{round_}.db"
        procs = [
            await trio.lowlevel.open_process(
                [sys.executable, "-c", OPENER, str(path), f"user{i}"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            for i in range(openers)
        ]
        try:
            with trio.fail_after(120):  # a guard against a hung child, not a timing assertion
                for proc in procs:
                    assert proc.stdout is not None
                    assert await read_line(proc.stdout, bytearray()) == b"ready"
                for proc in procs:
                    assert proc.stdin is not None
                    await proc.stdin.send_all(b"go\n")
                codes = [await proc.wait() for proc in procs]
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        assert codes == [0] * openers
        log = SQLiteLog(path)
        records = list(log.read_after(0))
        assert sorted(r.event.name for r in records) == [f"user{i}" for i in range(openers)]
        assert verify_chain(records).ok
        log.close()


# --- noticing appends from elsewhere ------------------------------------------------------


async def test_watcher_notices_an_account_created_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    log = SQLiteLog(path)
    log.append([Append(fetched("x", 0))])
    found: list[Head] = []

    async def watch() -> None:
        found.append(await wait_for_head_change(log, 1, poll_interval=0.05))

    with trio.fail_after(60):  # a guard against hanging, not a timing assertion
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await trio.testing.wait_all_tasks_blocked()
            assert found == []
            await trio.run_process([sys.executable, "-c", CREATOR, str(path), "newcomer"])
    (head,) = found
    assert head.seq == 2
    record = log.read(2)
    assert record is not None and head.hash == record.hash
    assert record.event == AccountCreated(name="newcomer", password_hash="scrypt$1$1$1$AA==$AA==")
    log.close()


async def test_watcher_notices_within_one_poll_interval(autojump_clock: trio.abc.Clock) -> None:
    log = MemoryLog()
    appended_at: list[float] = []
    noticed: list[tuple[float, Head]] = []

    async def watch() -> None:
        head = await wait_for_head_change(log, 0, poll_interval=0.25)
        noticed.append((trio.current_time(), head))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        await trio.sleep(10.1)  # virtual time: many polls see nothing
        assert noticed == []
        log.append([Append(fetched("a", 1))])
        appended_at.append(trio.current_time())
    (at, head) = noticed[0]
    assert head == log.head()
    assert 0 <= at - appended_at[0] <= 0.25


async def test_watcher_returns_at_once_if_already_beyond(autojump_clock: trio.abc.Clock) -> None:
    log = MemoryLog()
    log.append([Append(fetched("a", 1)), Append(fetched("a", 2))])
    start = trio.current_time()
    assert await wait_for_head_change(log, 1) == log.head()
    assert trio.current_time() == start


def test_sqlite_watcher_reads_the_head_only_after_a_commit(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    log = SQLiteLog(path)
    other = SQLiteLog(path)
    watcher = HeadWatcher(log, poll_interval=0.1)
    assert [watcher.probe() for _ in range(50)] == [Head(0, GENESIS_HASH)] * 50
    assert watcher.head_reads == 1

    other.append([Append(fetched("a", 1))])  # another connection commits
    assert watcher.probe() == other.head()
    assert watcher.probe() == Head(1, other.head().hash)
    assert watcher.head_reads == 2

    log.append([Append(fetched("a", 2))])  # the watched connection's own commit
    assert watcher.probe() == log.head()
    assert watcher.probe().seq == 2
    assert watcher.head_reads == 3
    log.close()
    other.close()


async def test_sqlite_watcher_wakes_on_another_connections_commit(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    log = SQLiteLog(path)
    other = SQLiteLog(path)
    found: list[Head] = []

    async def watch() -> None:
        found.append(await wait_for_head_change(log, 0, poll_interval=0.01))

    with trio.fail_after(60):  # a guard against hanging, not a timing assertion
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await trio.testing.wait_all_tasks_blocked()
            (record,) = other.append([Append(fetched("a", 1))])
    assert found == [Head(1, record.hash)]
    log.close()
    other.close()


async def test_committer_appends_are_noticed_by_a_watcher_on_another_connection(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    writer = SQLiteLog(path)
    reader = SQLiteLog(path)
    committer = GroupCommitter(writer)
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        record = await committer.append(fetched("a", 1))
        with trio.fail_after(60):  # a guard against hanging, not a timing assertion
            head = await wait_for_head_change(reader, 0, poll_interval=0.01)
        nursery.cancel_scope.cancel()
    assert head == Head(record.seq, record.hash)
    writer.close()
    reader.close()


def test_watcher_refuses_a_poll_interval_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="poll_interval"):
        HeadWatcher(MemoryLog(), poll_interval=0)
