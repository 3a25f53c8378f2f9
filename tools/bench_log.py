"""Benchmark durable appends to the event log.

Usage: python tools/bench_log.py [--seconds N] [--rounds R]

Measures appends per second of 4 KB MessageAccepted events through the group
committer and the SQLite log (WAL, synchronous=FULL) with 1, 10 and 100
concurrent appenders, and, on the same disk in the same run, the ceilings:
plain sqlite3 commits of the same rows, one per transaction and 100 per
transaction. Each row is the best of R interleaved runs (a shared machine is
noisy). Prints a markdown table and the ratio of the 100-appender rate to the
100-per-transaction ceiling.

The databases live in a temporary directory inside the current directory (not
/tmp, which may be a RAM disk where fsync costs nothing); it is removed after.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import trio

from eventmail.events import MessageAccepted, Recipient
from eventmail.store import EMPTY_HEAD, Append, Record, SQLiteLog
from eventmail.store.chain import seal
from eventmail.store.committer import GroupCommitter

MESSAGE_SIZE = 4096
POOL = 256  # distinct messages, reused round-robin
APPENDERS = (1, 10, 100)
CEILING_BATCHES = (1, 100)


def make_pool() -> list[Append]:
    pool = []
    for i in range(POOL):
        head = f"Received: from client{i}.example.org\r\nSubject: bench {i}\r\n\r\n".encode()
        body = head + (b"0123456789abcdef" * (MESSAGE_SIZE // 16))[: MESSAGE_SIZE - len(head)]
        event = MessageAccepted(
            message_id=f"bench{i:05d}",
            mail_from=f"sender{i}@example.org",
            recipients=(Recipient(account=f"user{i % 10}", address=f"user{i % 10}@localhost"),),
            peer=f"127.0.0.1:{40000 + i}",
            helo=f"client{i}.example.org",
            size=len(body),
            sha256=hashlib.sha256(body).hexdigest(),
        )
        pool.append(Append(event, body))
    return pool


def filesystem_of(path: Path) -> str:
    """The filesystem type holding ``path`` (from /proc/mounts; "unknown" elsewhere)."""
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) < 3:
                    continue
                mount = fields[1].replace("\\040", " ")
                inside = str(path).startswith(mount.rstrip("/") + "/") or str(path) == mount
                if inside and len(mount) > len(best):
                    best, kind = mount, fields[2]
    except OSError:
        pass
    return kind


# --- through the committer ---------------------------------------------------------


async def committer_rate(path: Path, pool: list[Append], appenders: int, seconds: float) -> float:
    log = SQLiteLog(path)
    committer = GroupCommitter(log)
    count = 0

    async def appender(offset: int, deadline: float) -> None:
        nonlocal count
        i = offset
        while trio.current_time() < deadline:
            item = pool[i % POOL]
            await committer.append(item.event, item.message)
            count += 1
            i += appenders

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(committer.run)
            start = time.perf_counter()
            deadline = trio.current_time() + seconds
            async with trio.open_nursery() as workers:
                for offset in range(appenders):
                    workers.start_soon(appender, offset, deadline)
            elapsed = time.perf_counter() - start
            nursery.cancel_scope.cancel()
        stats = committer.statistics()
        assert stats.appends == count and log.head().seq == count
    finally:
        log.close()
    return count / elapsed


# --- the ceilings: plain sqlite3, rows prepared in advance ----------------------------


def sealed_rows(pool: list[Append], count: int) -> list[tuple]:
    records: list[Record] = seal(
        ((pool[i % POOL].event, pool[i % POOL].message) for i in range(count)),
        EMPTY_HEAD,
        "2026-01-01T00:00:00.000000Z",
    )
    return [
        (
            r.seq,
            r.ts,
            r.type,
            json.dumps(list(r.accounts)),
            r.payload.decode(),
            r.message,
            r.prev_hash,
            r.hash,
            r.accounts[0],
        )
        for r in records
    ]


def ceiling_rate(path: Path, rows: list[tuple], per_transaction: int, seconds: float) -> float:
    SQLiteLog(path).close()  # the same schema, triggers and indexes as the real log
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    insert_event = (
        "INSERT INTO events (seq, ts, type, accounts, payload, message, prev_hash, hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    )
    insert_account = "INSERT INTO event_accounts (account, seq) VALUES (?, ?)"
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    try:
        while time.perf_counter() < deadline and done + per_transaction <= len(rows):
            batch = rows[done : done + per_transaction]
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(insert_event, [row[:8] for row in batch])
            conn.executemany(insert_account, [(row[8], row[0]) for row in batch])
            conn.execute("COMMIT")
            done += per_transaction
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
    if done + per_transaction > len(rows):
        print(f"warning: ran out of prepared rows after {done}", file=sys.stderr)
    return done / elapsed


def measure(
    workdir: Path, name: str, run: Callable[[Path], float], results: dict[str, float]
) -> None:
    """Run once on a fresh database; keep the best rate seen for ``name``."""
    path = workdir / f"{name.replace(' ', '-')}.db"
    rate = run(path)
    results[name] = max(results.get(name, 0.0), rate)
    print(f"  {name}: {rate:,.0f} appends/s", file=sys.stderr)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="duration of each row (default 3)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="split each row into this many interleaved runs and keep the best (default 3)",
    )
    args = parser.parse_args(argv)
    run_seconds = args.seconds / args.rounds
    workdir = Path(tempfile.mkdtemp(prefix=".bench-log-", dir=Path.cwd()))
    fs = filesystem_of(workdir)
    print(f"benchmark directory {workdir.name} on a {fs} filesystem", file=sys.stderr)
    if fs == "tmpfs":
        print("warning: tmpfs makes fsync free; run from a directory on disk", file=sys.stderr)
    pool = make_pool()
    results: dict[str, float] = {}
    # Enough prepared rows for a fast disk; reported if they run out.
    rows = sealed_rows(pool, max(20_000, int(run_seconds * 60_000)))
    try:
        # Rounds interleave the rows, so a burst of load on a shared machine
        # does not land on one row only.
        for _ in range(args.rounds):
            for appenders in APPENDERS:
                measure(
                    workdir,
                    f"committer {appenders}",
                    lambda p, a=appenders: trio.run(committer_rate, p, pool, a, run_seconds),
                    results,
                )
            for per in CEILING_BATCHES:
                measure(
                    workdir,
                    f"ceiling {per}",
                    lambda p, n=per: ceiling_rate(p, rows, n, run_seconds),
                    results,
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"Durable appends of {MESSAGE_SIZE} B MessageAccepted events, WAL, synchronous=FULL,")
    print(
        f"{args.seconds:g} s per row as the best of {args.rounds} interleaved runs, "
        f"{fs} filesystem, {os.cpu_count()} CPUs."
    )
    print()
    print("| writer | appends/s |")
    print("| --- | ---: |")
    for appenders in APPENDERS:
        label = f"GroupCommitter + SQLiteLog, {appenders} concurrent appender"
        label += "s" if appenders > 1 else ""
        print(f"| {label} | {results[f'committer {appenders}']:,.0f} |")
    for per in CEILING_BATCHES:
        label = f"plain sqlite3, {per} row{'s' if per > 1 else ''} per transaction (ceiling)"
        print(f"| {label} | {results[f'ceiling {per}']:,.0f} |")
    ratio = results["committer 100"] / results["ceiling 100"]
    print()
    print(f"100 appenders reach {ratio:.0%} of the 100-per-transaction ceiling (target 40%).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
