"""An in-memory event log: the reference backend for tests and tools."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence

from eventmail.store.base import EMPTY_HEAD, Append, Head, LogConflict, Record, utc_now
from eventmail.store.chain import seal


class MemoryLog:
    def __init__(self, clock: Callable[[], str] = utc_now) -> None:
        self._records: list[Record] = []
        self._lock = threading.Lock()
        self._clock = clock

    def append(self, batch: Sequence[Append], *, expect_seq: int | None = None) -> list[Record]:
        with self._lock:
            if expect_seq is not None and self.head().seq != expect_seq:
                raise LogConflict(f"the log is at seq {self.head().seq}, not {expect_seq}")
            records = seal(((a.event, a.message) for a in batch), self.head(), self._clock())
            self._records.extend(records)
            return records

    def read_after(
        self, seq: int, *, limit: int | None = None, types: Iterable[str] | None = None
    ) -> Iterator[Record]:
        wanted = None if types is None else set(types)
        count = 0
        for record in self._records[max(seq, 0) :]:
            if limit is not None and count >= limit:
                return
            if wanted is None or record.type in wanted:
                count += 1
                yield record

    def read(self, seq: int) -> Record | None:
        if 1 <= seq <= len(self._records):
            return self._records[seq - 1]
        return None

    def head(self) -> Head:
        if not self._records:
            return EMPTY_HEAD
        last = self._records[-1]
        return Head(last.seq, last.hash)

    def close(self) -> None:
        pass
