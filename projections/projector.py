"""The spool projector: applies the log to the spool directory exactly once.

Appends are made durable in batches: entries go to the spools and index lines
to the indexes, every touched file is fsynced, and only then the checkpoint
(last seq + every file's length) is replaced. On start, ``recover`` cuts every
file back to its checkpointed length and removes files the checkpoint does not
know, so an append torn by a crash is undone and done again, never doubled.

Resets and removals are not appends: they are done by redo. The new files are
written beside the old ones (``*.new``) and fsynced, a checkpoint naming the
pending renames is written, the renames are done, and a checkpoint without them
follows. ``recover`` redoes any pending rename whose source still exists.

``fault`` is called with a step name before each step that touches the disk,
so tests can stop the projector between any two steps.

``durable=False`` skips every fsync while applying events: for a directory that
is thrown away if the process dies before it is finished (a replay's work
directory). ``sync()`` then makes the whole directory durable at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import msgspec

from eventmail.store.base import EventLog
from projections import checkpoint
from projections.checkpoint import Checkpoint, Fault, fsync_dir, no_fault
from projections.layout import (
    INDEX_DIR,
    INDEX_SUFFIX,
    NEW_SUFFIX,
    REMOVED_DIR,
    SPOOL_SUFFIX,
    index_name,
    is_account_name,
    removed_names,
    spool_name,
)
from projections.spool import Create, Deliver, Remove, Reset, SpoolFold, changed, without
from projections.spoolformat import parse_index

DEFAULT_BATCH = 2000
MAX_OPEN_ACCOUNTS = 256  # files kept open within a batch before an early checkpoint
COPY_CHUNK = 1 << 20
SPOOL_BUFFER = 1 << 16  # bytes buffered per open spool: fewer, larger writes
# On Linux, POSIX_FADV_DONTNEED starts writeback of a file's dirty pages without waiting.
_START_WRITEBACK: int | None = getattr(os, "POSIX_FADV_DONTNEED", None)


class ProjectorStatistics(msgspec.Struct, frozen=True):
    applied_seq: int  # every event up to here is durably in the spools
    head_seq: int
    lag: int  # events committed to the log but not yet applied
    events_applied: int  # by this instance
    batches: int
    checkpoints: int
    accounts: int  # live mailboxes
    spool_bytes: int  # total size of the live mailboxes


class _Files:
    __slots__ = ("index", "spool")

    def __init__(self, spool: BinaryIO, index: BinaryIO) -> None:
        self.spool = spool
        self.index = index


class Projector:
    def __init__(
        self,
        spool_dir: Path,
        log: EventLog,
        *,
        batch_size: int = DEFAULT_BATCH,
        fault: Fault | None = None,
        durable: bool = True,
        owns: Callable[[str], bool] | None = None,
    ) -> None:
        self.spool_dir = Path(spool_dir)
        self._log = log
        self._batch_size = batch_size
        self._fault = fault or no_fault
        self._durable = durable
        self._owns = owns  # None: every account; else only the accounts it accepts
        self._fold = SpoolFold()
        self._lengths: dict[str, tuple[int, int]] = {}
        self._seq = 0  # applied in memory (maybe not yet durable)
        self._durable_seq = 0  # named by the checkpoint on disk
        self._open: dict[str, _Files] = {}
        self._created = False  # a file was created since the last checkpoint
        self._recovered = False
        self._events = 0
        self._batches = 0
        self._checkpoints = 0

    # --- public -----------------------------------------------------------------

    @property
    def applied_seq(self) -> int:
        return self._durable_seq

    def recover(self) -> None:
        """Bring the files back to the checkpoint (redo renames, cut torn appends)."""
        self._close_all()
        root = self.spool_dir
        (root / INDEX_DIR).mkdir(parents=True, exist_ok=True)
        found = checkpoint.load(root)
        if found is not None:
            self._redo(found.pending)
        state = found if found is not None and self._consistent(found) else Checkpoint()
        self._trim(state)
        fsync_dir(root / INDEX_DIR)
        fsync_dir(root)
        if state is not found:
            checkpoint.save(root, state, self._fault)
        self._lengths = dict(state.accounts)
        self._seq = self._durable_seq = state.seq
        self._recovered = True

    def catch_up(self, max_events: int | None = None) -> int:
        """Apply events committed after ``applied_seq``; return the new ``applied_seq``."""
        if not self._recovered:
            self.recover()
        done = 0
        try:
            while max_events is None or done < max_events:
                want = self._batch_size
                if max_events is not None:
                    want = min(want, max_events - done)
                applied = self._apply_batch(want)
                if applied == 0:
                    break
                done += applied
        except BaseException:
            # The files may be ahead of the checkpoint: recover before going on.
            self._close_all()
            self._recovered = False
            raise
        return self._durable_seq

    def sync(self) -> None:
        """fsync every file and directory of the spool directory (after durable=False)."""
        self._close_all()
        sync_tree(self.spool_dir)

    def statistics(self) -> ProjectorStatistics:
        head = self._log.head().seq
        return ProjectorStatistics(
            applied_seq=self._durable_seq,
            head_seq=head,
            lag=max(head - self._durable_seq, 0),
            events_applied=self._events,
            batches=self._batches,
            checkpoints=self._checkpoints,
            accounts=len(self._lengths),
            spool_bytes=sum(spool for spool, _ in self._lengths.values()),
        )

    # --- applying -----------------------------------------------------------------

    def _apply_batch(self, limit: int) -> int:
        count = 0
        owns = self._owns
        for record in self._log.read_after(self._seq, limit=limit):
            if owns is None:
                actions = self._fold.actions(record)
            elif record.accounts and not any(map(owns, record.accounts)):
                actions = []  # none of ours: skip the work (the chain vouches for the column)
            else:
                actions = [a for a in self._fold.actions(record) if owns(a.account)]
            for action in actions:
                match action:
                    case Deliver():
                        self._deliver(action)
                    case Create(account=account):
                        self._files(account)
                    case Reset():
                        self._checkpoint()
                        self._reset(action, record.seq)
                    case Remove():
                        self._checkpoint()
                        self._remove(action)
            self._seq = record.seq
            count += 1
            if len(self._open) >= MAX_OPEN_ACCOUNTS:
                self._checkpoint()
        if count:
            self._checkpoint()
            self._events += count
            self._batches += 1
        return count

    def _files(self, account: str) -> _Files:
        files = self._open.get(account)
        if files is None:
            if account not in self._lengths:
                self._lengths[account] = (0, 0)
                self._created = True
            self._fault("open")
            # Kept open for the whole batch; _checkpoint and _close_all close them.
            files = _Files(
                open(self.spool_dir / spool_name(account), "ab", SPOOL_BUFFER),  # noqa: SIM115
                open(self.spool_dir / index_name(account), "ab"),  # noqa: SIM115
            )
            self._open[account] = files
        return files

    def _deliver(self, action: Deliver) -> None:
        files = self._files(action.account)
        spool_len, index_len = self._lengths[action.account]
        # IndexEntry.line(), inlined: this runs once per delivered message.
        line = f"{action.seq} {spool_len} {action.length} {action.octets} {action.uidl}\n"
        data = line.encode()
        self._fault("spool.write")
        spool = files.spool
        for part in action.parts:
            spool.write(part)
        self._fault("index.write")
        files.index.write(data)
        self._lengths[action.account] = (spool_len + action.length, index_len + len(data))

    def _checkpoint(self, pending: list[tuple[str, str]] | None = None) -> None:
        """Make every append durable, then record it: fsync files, then the checkpoint."""
        if self._seq == self._durable_seq and not self._open and pending is None:
            return
        for files in self._open.values():
            self._fault("spool.fsync")
            self._sync_file(files.spool)
            self._fault("index.fsync")
            self._sync_file(files.index)
        self._close_all()
        if self._created:
            self._fault("dirsync")
            self._sync_dir(self.spool_dir / INDEX_DIR)
            self._sync_dir(self.spool_dir)
            self._created = False
        state = Checkpoint(seq=self._seq, accounts=dict(self._lengths), pending=pending or [])
        checkpoint.save(self.spool_dir, state, self._fault, durable=self._durable)
        self._durable_seq = self._seq
        self._checkpoints += 1

    def _reset(self, action: Reset, seq: int) -> None:
        account = action.account
        if account not in self._lengths:
            return
        root = self.spool_dir
        entries = parse_index((root / index_name(account)).read_bytes())
        if not changed(entries, action.removed):
            return
        kept = without(entries, action.removed)
        spool_new = spool_name(account) + NEW_SUFFIX
        index_new = index_name(account) + NEW_SUFFIX
        index_bytes = b"".join(entry.line() for _, entry in kept)
        spool_len = sum(entry.length for _, entry in kept)
        with (
            open(root / spool_name(account), "rb") as source,
            open(root / spool_new, "wb") as spool,
            open(root / index_new, "wb") as index,
        ):
            for old_offset, entry in kept:
                self._fault("rewrite.write")
                _copy(source, spool, old_offset, entry.length)
            index.write(index_bytes)
            self._fault("rewrite.fsync")
            self._sync_file(spool)
            self._sync_file(index)
        self._fault("rewrite.dirsync")
        self._sync_dir(root / INDEX_DIR)
        self._sync_dir(root)
        self._lengths[account] = (spool_len, len(index_bytes))
        self._seq = seq
        pending = [(spool_new, spool_name(account)), (index_new, index_name(account))]
        self._checkpoint(pending)
        self._redo(pending)
        self._checkpoint([])

    def _remove(self, action: Remove) -> None:
        account = action.account
        if account not in self._lengths:
            return
        removed_dir = self.spool_dir / REMOVED_DIR
        if not removed_dir.is_dir():
            self._fault("removed.mkdir")
            removed_dir.mkdir()
            self._sync_dir(self.spool_dir)
        spool_dst, index_dst = removed_names(account, action.seq)
        del self._lengths[account]
        self._seq = action.seq
        pending = [(spool_name(account), spool_dst), (index_name(account), index_dst)]
        self._checkpoint(pending)
        self._redo(pending)
        self._checkpoint([])

    # --- recovery -----------------------------------------------------------------

    def _redo(self, pending: list[tuple[str, str]]) -> None:
        """Do the renames a checkpoint names; those already done have no source left."""
        if not pending:
            return
        root = self.spool_dir
        for src, dst in pending:
            source = root / src
            if source.exists():
                self._fault("pending.rename")
                (root / dst).parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, root / dst)
        self._fault("pending.dirsync")
        for directory in {(root / name).parent for pair in pending for name in pair}:
            self._sync_dir(directory)

    def _consistent(self, state: Checkpoint) -> bool:
        """The files hold at least what the checkpoint says, and the log reaches its seq."""
        if state.seq > self._log.head().seq:
            return False
        for account, (spool_len, index_len) in state.accounts.items():
            if not is_account_name(account):
                return False
            if _size(self.spool_dir / spool_name(account)) < spool_len:
                return False
            if _size(self.spool_dir / index_name(account)) < index_len:
                return False
        return True

    def _trim(self, state: Checkpoint) -> None:
        """Cut known files to their checkpointed length; remove the ones it does not name."""
        root = self.spool_dir
        places = ((root, SPOOL_SUFFIX, 0), (root / INDEX_DIR, INDEX_SUFFIX, 1))
        for directory, suffix, which in places:
            for path in directory.iterdir():
                name = path.name
                if not path.is_file():
                    continue
                if name.endswith(suffix + NEW_SUFFIX) or name == checkpoint.TEMP_NAME:
                    path.unlink()
                    continue
                account = name[: -len(suffix)]
                if not name.endswith(suffix) or not is_account_name(account):
                    continue  # not ours (an operator's file): leave it alone
                lengths = state.accounts.get(account)
                if lengths is None:
                    path.unlink()
                else:
                    _truncate(path, lengths[which])
        for account in state.accounts:
            for name in (spool_name(account), index_name(account)):
                (root / name).touch()

    def _sync_file(self, file: BinaryIO) -> None:
        file.flush()
        if self._durable:
            os.fsync(file.fileno())
        elif _START_WRITEBACK is not None:
            # Not durable yet (sync() waits for that), but let the disk start on it
            # while the next batch is computed.
            os.posix_fadvise(file.fileno(), 0, 0, _START_WRITEBACK)

    def _sync_dir(self, directory: Path) -> None:
        if self._durable:
            fsync_dir(directory)

    def _close_all(self) -> None:
        for files in self._open.values():
            files.spool.close()
            files.index.close()
        self._open.clear()


def sync_tree(root: Path) -> None:
    """fsync every file and directory under ``root``, directories last."""
    directories = [root]
    for path in sorted(root.rglob("*")):
        if path.is_dir():
            directories.append(path)
        else:
            with open(path, "rb") as file:
                os.fsync(file.fileno())
    for directory in reversed(directories):
        fsync_dir(directory)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


def _truncate(path: Path, length: int) -> None:
    if path.stat().st_size > length:
        with open(path, "r+b") as file:
            file.truncate(length)
            os.fsync(file.fileno())


def _copy(source: BinaryIO, target: BinaryIO, offset: int, length: int) -> None:
    source.seek(offset)
    while length > 0:
        chunk = source.read(min(length, COPY_CHUNK))
        if not chunk:
            raise OSError(f"spool shorter than its index at offset {offset}")
        target.write(chunk)
        length -= len(chunk)
