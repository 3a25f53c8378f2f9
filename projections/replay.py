"""Replay: rebuild a spool directory from nothing, then swap it in atomically.

The new spools are built by an ordinary ``Projector`` in a work directory
beside the target (``<target>.replay-<pid>``), so a replay that dies half-way
leaves the target untouched. The swap renames the target aside, renames the
work directory into place, fsyncs the parent and removes the old one.

``--until`` bounds the replay to a prefix of the log: a seq (events up to and
including it) or a time (events up to the first one stamped later than it).
Memory stays flat: records are streamed, spools are never held in RAM.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from eventmail.store.base import Append, EventLog, Head, Record, format_ts
from projections import parallel
from projections.checkpoint import fsync_dir
from projections.layout import CHECKPOINT
from projections.projector import Projector

REPLAY_BATCH = 10_000  # events per checkpoint while replaying


class ReplayError(ValueError):
    """A replay request that cannot be done as asked (one line for the operator)."""


class Until(msgspec.Struct, frozen=True):
    seq: int | None = None
    ts: str | None = None  # the log's timestamp format; compares as text

    def admits(self, record: Record) -> bool:
        if self.seq is not None and record.seq > self.seq:
            return False
        return self.ts is None or record.ts <= self.ts


class ReplayResult(msgspec.Struct, frozen=True):
    events: int
    last_seq: int
    accounts: int
    spool_bytes: int


def parse_until(text: str) -> Until:
    """``SEQ`` (a non-negative integer) or an ISO 8601 time (no zone means UTC)."""
    text = text.strip()
    if text.isdigit():
        return Until(seq=int(text))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ReplayError(
            f"invalid --until {text!r}: expected a seq number or an ISO 8601 time "
            "such as 2026-11-29T23:00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return Until(ts=format_ts(moment))


class BoundedLog:
    """A read-only view of the log that ends where ``until`` says."""

    def __init__(self, log: EventLog, until: Until) -> None:
        self._log = log
        self._until = until

    def read_after(
        self, seq: int, *, limit: int | None = None, types: Iterable[str] | None = None
    ) -> Iterator[Record]:
        for record in self._log.read_after(seq, limit=limit, types=types):
            if not self._until.admits(record):
                return
            yield record

    def read(self, seq: int) -> Record | None:
        record = self._log.read(seq)
        return record if record is not None and self._until.admits(record) else None

    def head(self) -> Head:
        return self._log.head()

    def append(self, batch: Sequence[Append]) -> list[Record]:
        raise ReplayError("a bounded replay view is read-only")

    def close(self) -> None:
        pass


def check_into(into: Path, live_spool: Path) -> None:
    """Refuse an --into target that would touch the live spools or unrelated files."""
    target, live = into.resolve(), live_spool.resolve()
    if target == live or live in target.parents:
        raise ReplayError(f"--into {into} is the live spool directory; choose another directory")
    if target in live.parents:
        raise ReplayError(f"--into {into} contains the live spool directory; choose another")
    if target.exists() and not target.is_dir():
        raise ReplayError(f"--into {into} exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not (target / CHECKPOINT).exists():
        raise ReplayError(f"--into {into} is not empty and holds no earlier replay; refusing")


def rebuild(
    log: EventLog,
    target: Path,
    *,
    until: Until | None = None,
    batch: int = REPLAY_BATCH,
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
    opener: parallel.Opener | None = None,
) -> ReplayResult:
    """Project the log (or its prefix) into a fresh ``target``; swap it in.

    The replay stops at the head it finds when it starts (or earlier, as
    ``until`` says). With ``workers`` > 1 and an ``opener`` (a picklable
    callable opening the same log in another process), the accounts are
    divided among that many processes.
    """
    work = target.with_name(f"{target.name}.replay-{os.getpid()}")
    if work.exists():
        shutil.rmtree(work)
    bound = Until(seq=target_seq(log, until), ts=None if until is None else until.ts)
    try:
        if workers > 1 and opener is not None:
            state = parallel.build(
                opener,
                work,
                until_seq=bound.seq or 0,
                until_ts=bound.ts,
                batch=batch,
                workers=workers,
                progress=progress,
            )
            result = ReplayResult(
                events=state.seq,
                last_seq=state.seq,
                accounts=len(state.accounts),
                spool_bytes=sum(spool for spool, _ in state.accounts.values()),
            )
        else:
            result = _build(BoundedLog(log, bound), work, batch, progress)
        swap_in(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return result


def _build(
    source: EventLog, work: Path, batch: int, progress: Callable[[int], None] | None
) -> ReplayResult:
    # A work directory is discarded if the replay dies, so it needs no fsync
    # until it is complete: then everything is synced once, before the swap.
    projector = Projector(work, source, batch_size=batch, durable=False)
    projector.recover()
    while True:
        before = projector.applied_seq
        after = projector.catch_up(max_events=batch)
        if progress is not None:
            progress(after)
        if after == before:
            break
    stats = projector.statistics()
    projector.sync()
    return ReplayResult(
        events=stats.events_applied,
        last_seq=stats.applied_seq,
        accounts=stats.accounts,
        spool_bytes=stats.spool_bytes,
    )


def swap_in(work: Path, target: Path) -> None:
    """Replace ``target`` with ``work`` by renames; the old tree is removed afterwards."""
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        os.rename(work, target)
        fsync_dir(parent)
        return
    old = target.with_name(f"{target.name}.old-{os.getpid()}")
    if old.exists():
        shutil.rmtree(old)
    os.rename(target, old)
    os.rename(work, target)
    fsync_dir(parent)
    shutil.rmtree(old)


def remove_leftovers(target: Path) -> None:
    """Remove work and old trees a crashed replay left beside ``target``.

    Only safe while holding the data-directory lock (no other replay running).
    """
    if not target.parent.is_dir():
        return
    for path in target.parent.iterdir():
        name = path.name
        if path.is_dir() and name.startswith((f"{target.name}.replay-", f"{target.name}.old-")):
            shutil.rmtree(path, ignore_errors=True)


def target_seq(log: EventLog, until: Until | None) -> int:
    """The seq a replay will reach at most (for a progress bar)."""
    head = log.head().seq
    if until is not None and until.seq is not None:
        return min(head, until.seq)
    return head
