"""Open the event log for the inspection commands (log, show, verify): read-only.

The connection is opened with ``mode=ro``, so inspecting a log can never change
it, never re-create a dropped trigger, and never create an empty log by mistake.
Any SQLite error while reading becomes a one-line user error.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from eventmail.cli.common import EVENTS_DB, UserError
from eventmail.store import SQLiteLog


@contextmanager
def reading_log(data: Path) -> Iterator[SQLiteLog]:
    path = data / EVENTS_DB
    if not path.is_file():
        raise UserError(f"no event log at {path} (create an account or run `eventmail serve`)")
    try:
        log = SQLiteLog(path, readonly=True)
    except sqlite3.Error as exc:
        raise UserError(f"cannot open the event log {path}: {exc}") from exc
    try:
        yield log
    except sqlite3.Error as exc:
        raise UserError(f"cannot read the event log {path}: {exc}") from exc
    finally:
        log.close()
