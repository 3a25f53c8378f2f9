"""Benchmark ``replay``: events/s and MB/s against a plain-Python I/O ceiling.

    python tools/bench_replay.py [--messages 100000] [--accounts 100] [--size 4096]
                                 [--workers N] [--repeat 3]

The log (MESSAGES messages of about SIZE bytes over ACCOUNTS accounts; about
one message in 20 has a line mboxrd must quote) is built once with
``SQLiteLog.append`` in big batches and cached in the temp directory. Then,
each in a fresh process:

- replay by one process of the first 10% of the log and of all of it: events/s,
  MB/s and peak RSS, which must not grow with the log (worker processes of a
  parallel replay are each such a projector over a share of the accounts);
- replay with WORKERS processes and the ceiling, alternated REPEAT times, the
  best run of each counting (the machine may be shared);
- the ceiling: a plain loop writing the same number of bytes to the same files
  in the same order (spool entry, index line), with the replay's fsync policy
  (a replay builds a work directory that is discarded if it dies, so it closes
  its files and replaces its checkpoint every ``REPLAY_BATCH`` events without
  fsync, and fsyncs every file and directory once at the end, before the swap).
  Its bytes are filler: only the I/O is measured, not reading the log or
  building entries.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eventmail.events import AccountCreated, MessageAccepted, Recipient  # noqa: E402
from eventmail.store import Append, SQLiteLog  # noqa: E402
from projections.checkpoint import fsync_dir  # noqa: E402
from projections.replay import REPLAY_BATCH, Until, rebuild  # noqa: E402
from projections.spoolformat import parse_index  # noqa: E402

APPEND_BATCH = 5000


def account_name(n: int) -> str:
    return f"user{n:04d}"


def message_bytes(rng: random.Random, n: int, size: int) -> bytes:
    head = (
        f"Received: from client.example.org ([127.0.0.1]) by bench; id Q{n}\r\n"
        f"From: sender{n % 97}@example.org\r\nSubject: bench message {n}\r\n\r\n"
    ).encode()
    lines = [head]
    total = len(head)
    # About one message in 20 has a body line starting "From " that mboxrd quotes.
    quote_at = rng.randrange(1, max(size // 72, 2)) if rng.random() < 0.05 else -1
    while total < size:
        if len(lines) == quote_at:
            line = b"From the bench, a line that mboxrd must quote\r\n"
        else:
            line = rng.randbytes(35).hex().encode() + b"\r\n"
        lines.append(line)
        total += len(line)
    return b"".join(lines)


def build_log(path: Path, messages: int, accounts: int, size: int) -> None:
    """Write the benchmark log unless a complete one is cached at ``path``."""
    expected = accounts + messages
    if path.exists():
        log = SQLiteLog(path)
        try:
            if log.head().seq == expected:
                return
        finally:
            log.close()
        path.unlink()
    print(f"building a log of {messages} messages in {path} ...", file=sys.stderr)
    rng = random.Random(1)
    log = SQLiteLog(path)
    try:
        log.append(
            [
                Append(AccountCreated(name=account_name(a), password_hash="scrypt$bench"))
                for a in range(accounts)
            ]
        )
        for start in range(0, messages, APPEND_BATCH):
            batch = []
            for n in range(start, min(start + APPEND_BATCH, messages)):
                body = message_bytes(rng, n, size)
                to = account_name(n % accounts)
                event = MessageAccepted(
                    message_id=f"Q{n}",
                    mail_from=f"sender{n % 97}@example.org",
                    recipients=(Recipient(account=to, address=f"{to}@localhost"),),
                    peer="127.0.0.1:40000",
                    helo="client.example.org",
                    size=len(body),
                    sha256=hashlib.sha256(body).hexdigest(),
                )
                batch.append(Append(event, body))
            log.append(batch)
    finally:
        log.close()


def peak_rss_mb() -> float:
    """This process's peak RSS (worker processes are not its children: see main)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def child_replay(db: Path, out: Path, until: int | None, workers: int) -> dict[str, float]:
    log = SQLiteLog(db, readonly=True)
    try:
        started = time.perf_counter()
        result = rebuild(
            log,
            out,
            until=None if until is None else Until(seq=until),
            workers=workers,
            opener=functools.partial(SQLiteLog, db, readonly=True),
        )
        seconds = time.perf_counter() - started
    finally:
        log.close()
    return {
        "events": result.events,
        "bytes": result.spool_bytes,
        "seconds": seconds,
        "peak_rss_mb": peak_rss_mb(),
    }


def child_ceiling(reference: Path, out: Path) -> dict[str, float]:
    """Write what the replay wrote, entry by entry in log order, with its fsync policy."""
    plan: list[tuple[int, str, int, int]] = []  # (seq, account, entry bytes, index line bytes)
    for idx in sorted((reference / ".index").glob("*.idx")):
        for entry in parse_index(idx.read_bytes()):
            plan.append((entry.seq, idx.stem, entry.length, len(entry.line())))
    plan.sort()
    events = plan[-1][0] if plan else 0
    filler = memoryview(b"x" * max((p[2] for p in plan), default=1))
    line_filler = memoryview(b"y" * 200)
    if out.exists():
        shutil.rmtree(out)
    (out / ".index").mkdir(parents=True)
    written = 0
    started = time.perf_counter()
    files: dict[str, tuple[BinaryIO, BinaryIO]] = {}
    batch_end = REPLAY_BATCH

    def end_batch(seq: int) -> None:
        # Like the replay's work directory: close the batch's files, replace the
        # checkpoint, no fsync until the end.
        for spool, index in files.values():
            spool.close()
            index.close()
        files.clear()
        temp = out / ".checkpoint.json.tmp"
        temp.write_bytes(json.dumps({"seq": seq}).encode())
        os.replace(temp, out / ".checkpoint.json")

    for seq, account, length, line_length in plan:
        if seq > batch_end:
            end_batch(batch_end)
            batch_end += REPLAY_BATCH
        pair = files.get(account)
        if pair is None:
            spool = open(out / f"{account}.TXT", "ab")  # noqa: SIM115
            pair = (spool, open(out / ".index" / f"{account}.idx", "ab"))  # noqa: SIM115
            files[account] = pair
        pair[0].write(filler[:length])
        pair[1].write(line_filler[:line_length])
        written += length
    end_batch(events)
    for path in sorted(out.rglob("*")):  # everything durable once, as before the swap
        if path.is_file():
            with open(path, "rb") as file:
                os.fsync(file.fileno())
    fsync_dir(out / ".index")
    fsync_dir(out)
    seconds = time.perf_counter() - started
    return {"events": events, "bytes": written, "seconds": seconds, "peak_rss_mb": peak_rss_mb()}


def run_child(*args: str) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output)


def describe(name: str, r: dict[str, float]) -> str:
    mb = r["bytes"] / 1e6
    return (
        f"{name:<24} {int(r['events']):>7} events {mb:>9.1f} MB {r['seconds']:>7.2f} s "
        f"{r['events'] / r['seconds']:>9.0f} ev/s {mb / r['seconds']:>7.1f} MB/s "
        f"peak RSS {r['peak_rss_mb']:.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the best counts")
    parser.add_argument(
        "--workers", type=int, default=min(os.cpu_count() or 1, 4), help="replay processes"
    )
    parser.add_argument("--child", nargs=3, metavar=("KIND", "SRC", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--until", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, src, out = args.child
        if kind == "replay":
            result = child_replay(Path(src), Path(out), args.until, args.workers)
        else:
            result = child_ceiling(Path(src), Path(out))
        print(json.dumps(result))
        return

    db = args.cache / f"eventmail-bench-v2-{args.messages}x{args.size}-{args.accounts}.db"
    build_log(db, args.messages, args.accounts, args.size)
    with tempfile.TemporaryDirectory(dir=args.cache) as scratch:
        work = Path(scratch)
        # Memory: one projector in one process, over 10% and over all of the log.
        small_until = str(args.accounts + args.messages // 10)
        small = run_child("--child", "replay", str(db), str(work / "small"), "--until", small_until)
        shutil.rmtree(work / "small")
        serial = run_child("--child", "replay", str(db), str(work / "serial"))
        shutil.rmtree(work / "serial")
        # Throughput: alternate replay and ceiling, keep the best of each (shared machine).
        fulls, ceilings = [], []
        for _ in range(args.repeat):
            shutil.rmtree(work / "replay", ignore_errors=True)
            replay_args = ["--child", "replay", str(db), str(work / "replay")]
            fulls.append(run_child(*replay_args, "--workers", str(args.workers)))
            ceilings.append(
                run_child("--child", "ceiling", str(work / "replay"), str(work / "ceiling"))
            )
        full = min(fulls, key=lambda r: r["seconds"])
        ceiling = min(ceilings, key=lambda r: r["seconds"])
    print(describe("replay 10%, 1 process", small))
    print(describe("replay all, 1 process", serial))
    print(describe(f"replay all, {args.workers} proc.", full))
    print(describe("I/O ceiling", ceiling))
    print(
        f"best of {args.repeat}; all runs (s): replay "
        + " ".join(f"{r['seconds']:.2f}" for r in fulls)
        + " / ceiling "
        + " ".join(f"{r['seconds']:.2f}" for r in ceilings)
    )

    def rate(r: dict[str, float]) -> float:
        return r["bytes"] / r["seconds"]

    print(
        f"replay throughput = {rate(full) / rate(ceiling):.0%} of the ceiling with "
        f"{args.workers} processes, {rate(serial) / rate(ceiling):.0%} with one (target >= 50%)"
    )
    growth = serial["peak_rss_mb"] - small["peak_rss_mb"]
    print(f"peak RSS growth from 10% to 100% of the log (one process): {growth:+.1f} MB")


if __name__ == "__main__":
    main()
