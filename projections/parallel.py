"""A replay split across processes by account.

Each mailbox depends only on the events of its own account, so the accounts
are divided among worker processes by a stable hash of their names. Every
worker reads the whole log up to one fixed seq (so all stop at the same
event), projects only its accounts into its own directory, and the parts are
then merged by renames into one directory with one checkpoint. The files are
the same bytes a single projector would write.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import zlib
from collections.abc import Callable
from pathlib import Path

import msgspec

from eventmail.store.base import EventLog
from projections import checkpoint
from projections.checkpoint import Checkpoint
from projections.layout import INDEX_DIR, REMOVED_DIR, SPOOL_SUFFIX
from projections.projector import Projector, sync_tree

Opener = Callable[[], EventLog]


class ParallelError(RuntimeError):
    """A worker of a parallel replay failed."""


class Share(msgspec.Struct, frozen=True):
    """The accounts one worker owns: those whose name hashes to ``index``."""

    index: int
    workers: int

    def __call__(self, account: str) -> bool:
        return zlib.crc32(account.encode()) % self.workers == self.index


def build(
    opener: Opener,
    work: Path,
    *,
    until_seq: int,
    until_ts: str | None,
    batch: int,
    workers: int,
    progress: Callable[[int], None] | None = None,
) -> Checkpoint:
    """Project events up to ``until_seq`` into ``work`` with ``workers`` processes."""
    context = multiprocessing.get_context("forkserver")
    reached = context.Array("q", workers)  # each worker's applied seq, for progress
    parts = [work.with_name(f"{work.name}-{index}") for index in range(workers)]
    processes = [
        context.Process(
            target=_work,
            args=(opener, part, until_seq, until_ts, batch, Share(index, workers), reached),
            daemon=True,
        )
        for index, part in enumerate(parts)
    ]
    try:
        for process in processes:
            process.start()
        for process in processes:
            while process.exitcode is None:
                process.join(0.25)
                if progress is not None:
                    progress(min(reached))
        failed = [p.exitcode for p in processes if p.exitcode != 0]
        if failed:
            raise ParallelError(f"a replay worker failed (exit status {failed[0]})")
        return _merge(parts, work)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()
        for part in parts:
            shutil.rmtree(part, ignore_errors=True)


def _work(
    opener: Opener,
    part: Path,
    until_seq: int,
    until_ts: str | None,
    batch: int,
    share: Share,
    reached: multiprocessing.sharedctypes.SynchronizedArray[int],
) -> None:
    from projections.replay import BoundedLog, Until  # here: replay imports this module

    log = opener()
    try:
        bounded = BoundedLog(log, Until(seq=until_seq, ts=until_ts))
        projector = Projector(part, bounded, batch_size=batch, durable=False, owns=share)
        projector.recover()
        while True:
            before = projector.applied_seq
            after = projector.catch_up(max_events=batch)
            reached[share.index] = after
            if after == before:
                break
        projector.sync()
    finally:
        log.close()


def _merge(parts: list[Path], work: Path) -> Checkpoint:
    """Move every part's files into ``work`` and write one checkpoint for them all."""
    states = [checkpoint.load(part) for part in parts]
    seqs = {state.seq for state in states if state is not None}
    if None in states or len(seqs) != 1:
        raise ParallelError("replay workers stopped at different events")
    accounts: dict[str, tuple[int, int]] = {}
    (work / INDEX_DIR).mkdir(parents=True)
    for part, state in zip(parts, states, strict=True):
        assert state is not None
        accounts.update(state.accounts)
        for path in part.glob("*" + SPOOL_SUFFIX):
            os.rename(path, work / path.name)
        for path in (part / INDEX_DIR).iterdir():
            os.rename(path, work / INDEX_DIR / path.name)
        if (part / REMOVED_DIR).is_dir():
            (work / REMOVED_DIR).mkdir(exist_ok=True)
            for path in (part / REMOVED_DIR).iterdir():
                os.rename(path, work / REMOVED_DIR / path.name)
    merged = Checkpoint(seq=seqs.pop(), accounts=dict(sorted(accounts.items())))
    checkpoint.save(work, merged)
    sync_tree(work)
    return merged
