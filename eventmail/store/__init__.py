"""The event log: one interface, a SQLite and an in-memory backend, group commit."""

from eventmail.store.base import (
    EMPTY_HEAD,
    GENESIS_HASH,
    Append,
    EventLog,
    Head,
    LogBusy,
    LogConflict,
    LogUnavailable,
    LogWriteError,
    Record,
)
from eventmail.store.memory import MemoryLog
from eventmail.store.sqlite import SQLiteLog

__all__ = [
    "EMPTY_HEAD",
    "GENESIS_HASH",
    "Append",
    "EventLog",
    "Head",
    "LogBusy",
    "LogConflict",
    "LogUnavailable",
    "LogWriteError",
    "MemoryLog",
    "Record",
    "SQLiteLog",
]
