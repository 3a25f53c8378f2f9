"""Pieces every CLI command shares: the --data option, opening the log, errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from eventmail import config
from eventmail.store import LogWriteError, SQLiteLog

F = TypeVar("F", bound=Callable[..., Any])

EVENTS_DB = "events.db"


class UserError(click.ClickException):
    """A user error: one line on stderr, exit code 1, no traceback."""

    def format_message(self) -> str:
        return self.message


def data_option(func: F) -> F:
    return click.option(
        "--data",
        "data",
        envvar="EVENTMAIL_DATA",
        default=config.DEFAULT_DATA_DIR,
        show_default=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="Data directory holding events.db and spool/ (env: EVENTMAIL_DATA).",
    )(func)


def config_option(func: F) -> F:
    return click.option(
        "--config",
        "config_file",
        default=None,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Configuration file (default: DATA/eventmail.toml if present).",
    )(func)


def load_config(data: Path, config_file: Path | None) -> config.Config:
    try:
        return config.load(data, config_file)
    except config.ConfigError as exc:
        raise UserError(str(exc)) from exc


def open_log(data: Path, *, create: bool = False, busy_timeout: float = 5.0) -> SQLiteLog:
    """Open DATA/events.db; refuse with a clear error if it is missing (unless create)."""
    path = data / EVENTS_DB
    if not create and not path.exists():
        raise UserError(
            f"no event log at {path} (create an account or run `eventmail serve` first)"
        )
    try:
        return SQLiteLog(path, busy_timeout=busy_timeout)
    except LogWriteError as exc:
        raise UserError(f"cannot open the event log {path}: {exc}") from exc
    except OSError as exc:
        raise UserError(f"cannot open the event log {path}: {exc.strerror}") from exc
