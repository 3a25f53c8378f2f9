"""Group commit: many concurrent appenders, one transaction per batch.

A single Trio task owns the log. Appenders put their event on a channel and
wait; the task takes everything queued, commits it in one transaction on a
worker thread, and only then wakes each appender with its record. While one
batch is being committed the next one queues up, so throughput is bounded by
transactions, not by appends.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import trio

from eventmail.events import Event
from eventmail.store.base import Append, EventLog, LogUnavailable, LogWriteError, Record


class CommitterStatistics(msgspec.Struct, frozen=True):
    appends: int
    transactions: int
    largest_batch: int
    failed_transactions: int
    queued: int


class Receipt:
    """One queued append and its outcome; wakes the task waiting on it once settled."""

    __slots__ = ("append", "error", "record", "settled", "task")

    def __init__(self, append: Append) -> None:
        self.append = append
        self.record: Record | None = None
        self.error: LogWriteError | None = None
        self.settled = False
        self.task: trio.lowlevel.Task | None = None

    def settle(self, record: Record | None, error: LogWriteError | None) -> None:
        self.record, self.error, self.settled = record, error, True
        if self.task is not None:
            trio.lowlevel.reschedule(self.task)

    @property
    def durable(self) -> bool:
        return self.settled and self.error is None

    async def result(self) -> Record:
        """Wait, not cancellable, until settled; the record, or raise its error.

        One task at a time may wait (cheaper than an Event in a shielded scope).
        """
        if self.settled:
            await trio.lowlevel.cancel_shielded_checkpoint()
        else:
            self.task = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)
        if self.error is not None:
            raise self.error
        assert self.record is not None
        return self.record


class GroupCommitter:
    def __init__(
        self,
        log: EventLog,
        *,
        max_batch: int = 512,
        queue_size: int = 4096,
        in_thread: bool = True,
    ) -> None:
        """``in_thread=False`` commits on the Trio thread: only for an in-memory log,
        where it keeps tests deterministic (no worker thread for a mock clock to race).
        """
        self.log = log
        self._in_thread = in_thread
        self._max_batch = max_batch
        self._send, self._receive = trio.open_memory_channel[Receipt](queue_size)
        self._appends = 0
        self._transactions = 0
        self._largest = 0
        self._failed = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Commit batches until cancelled. Start it in the server's nursery."""
        task_status.started()
        try:
            async for first in self._receive:
                batch = [first]
                while len(batch) < self._max_batch:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except trio.WouldBlock:
                        break
                # Shielded: these appends are off the queue, so stopping now would
                # leave their callers waiting forever; the commit finishes first.
                with trio.CancelScope(shield=True):
                    await self._commit(batch)
        finally:
            self._fail_queued()

    def _fail_queued(self) -> None:
        """On shutdown: refuse new appends and fail the queued ones, which would wait forever."""
        error = LogUnavailable("the event log committer has stopped")
        while True:
            try:
                pending = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            pending.settle(None, error)
        self._receive.close()

    async def _commit(self, batch: Sequence[Receipt]) -> None:
        appends = [p.append for p in batch]
        try:
            if self._in_thread:
                # Not abandonable: a commit that started must finish before anyone is told.
                records = await trio.to_thread.run_sync(self.log.append, appends)
            else:
                records = self.log.append(appends)
        except LogWriteError as exc:
            self._fail(batch, exc)
            return
        except Exception as exc:  # an unexpected failure must not hang appenders
            if len(batch) == 1:
                self._fail(batch, LogUnavailable(f"{type(exc).__name__}: {exc}"))
                return
            # It may come from one bad event: commit the others without it. The
            # failed transaction stored nothing, so retrying one by one is safe.
            self._failed += 1
            for pending in batch:
                await self._commit([pending])
            return
        self._appends += len(records)
        self._transactions += 1
        self._largest = max(self._largest, len(records))
        for pending, record in zip(batch, records, strict=True):
            pending.settle(record, None)

    def _fail(self, batch: Sequence[Receipt], error: LogWriteError) -> None:
        self._failed += 1
        for pending in batch:
            pending.settle(None, error)

    async def submit(self, event: Event, message: bytes | None = None) -> Receipt:
        """Queue one event in order and return at once, without waiting for the commit.

        ``await receipt.result()`` later returns its record once durable (or raises
        ``LogWriteError``). Events are committed in the order they were queued.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        receipt = Receipt(Append(event, message))
        try:
            try:
                self._send.send_nowait(receipt)
            except trio.WouldBlock:
                await self._send.send(receipt)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise LogUnavailable("the event log committer has stopped") from None
        return receipt

    async def append(self, event: Event, message: bytes | None = None) -> Record:
        """Append one event; return its record once the commit is durable.

        Raises ``LogWriteError`` if the batch could not be committed. Once the
        event is queued the caller waits for the outcome even if cancelled, so
        nothing is acknowledged or retried on a guess.
        """
        receipt = await self.submit(event, message)
        return await receipt.result()

    def statistics(self) -> CommitterStatistics:
        return CommitterStatistics(
            appends=self._appends,
            transactions=self._transactions,
            largest_batch=self._largest,
            failed_transactions=self._failed,
            queued=self._send.statistics().current_buffer_used,
        )
