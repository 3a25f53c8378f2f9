"""The data directory's layout and the lock a running server holds on it."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

EVENTS_DB = "events.db"
SPOOL_DIR = "spool"
LOCK_FILE = "serve.lock"


class DataDirBusy(Exception):
    """Another process (a running server) holds the data directory."""


@contextmanager
def exclusive(data: Path, purpose: str) -> Iterator[None]:
    """Hold DATA/serve.lock for the duration; raise DataDirBusy if held elsewhere.

    ``serve`` holds it while running; an in-place ``replay`` takes it too, so the
    two never touch the spools at once. The lock dies with its process.
    """
    data.mkdir(parents=True, exist_ok=True)
    fd = os.open(data / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise DataDirBusy(f"{data} is in use by {holder}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{purpose} (pid {os.getpid()})\n".encode(), 0)
        yield
    finally:
        os.close(fd)
