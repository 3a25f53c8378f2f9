"""``eventmail accounts add|list|passwd|remove``: account commands append events."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from eventmail.accounts import AccountError, Accounts, validate_name, validate_password
from eventmail.cli.common import UserError, data_option, open_log
from eventmail.events import Event
from eventmail.store import Append, LogConflict, LogWriteError, Record, SQLiteLog

CONFLICT_RETRIES = 20


@click.group()
def accounts() -> None:
    """Create, list, re-password and remove mail accounts."""


def _read_password(from_stdin: bool) -> str:
    """Read and check the password before the log is touched: a bad one writes nothing."""
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise UserError("no password on standard input")
        password = line.rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        return validate_password(password)
    except AccountError as exc:
        raise UserError(str(exc)) from exc


def _append_command(
    data: Path, command: Callable[[Accounts], Event], *, create: bool = False
) -> None:
    """Fold the current accounts, run the command against them, append its event.

    Only ``add`` may create the log; changing or removing an account in a data
    directory without one is an error that leaves the directory untouched.
    """
    log = open_log(data, create=create)
    try:
        record, event = _decide_and_append(log, command)
    finally:
        log.close()
    click.echo(f"{record.type} {event.accounts()[0]} (seq {record.seq})")


def _decide_and_append(
    log: SQLiteLog, command: Callable[[Accounts], Event]
) -> tuple[Record, Event]:
    """Append the command's event only if no other writer changed the log meanwhile.

    Two ``accounts add X`` at once would otherwise both pass the "exists?" check.
    On a conflict the fold catches up and the command is decided again.
    """
    current = Accounts()
    for _ in range(CONFLICT_RETRIES):
        current.catch_up(log)
        try:
            event = command(current)
        except AccountError as exc:
            raise UserError(str(exc)) from exc
        try:
            (record,) = log.append([Append(event)], expect_seq=current.last_seq)
        except LogConflict:
            continue
        except LogWriteError as exc:
            raise UserError(f"could not write the event log: {exc}") from exc
        return record, event
    raise UserError("the event log is too busy with other writers; try again")


def _current(log: SQLiteLog) -> Accounts:
    current = Accounts()
    current.catch_up(log)
    return current


def _checked_name(name: str) -> str:
    try:
        return validate_name(name)
    except AccountError as exc:
        raise UserError(str(exc)) from exc


@accounts.command("add")
@data_option
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.argument("name")
def add(data: Path, password_stdin: bool, name: str) -> None:
    """Create account NAME (its address is NAME@<domain>)."""
    _checked_name(name)
    password = _read_password(password_stdin)
    _append_command(data, lambda current: current.create(name, password), create=True)


@accounts.command("passwd")
@data_option
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.argument("name")
def passwd(data: Path, password_stdin: bool, name: str) -> None:
    """Change the password of account NAME."""
    _checked_name(name)
    password = _read_password(password_stdin)
    _append_command(data, lambda current: current.change_password(name, password))


@accounts.command("remove")
@data_option
@click.argument("name")
def remove(data: Path, name: str) -> None:
    """Remove account NAME. Its mail stays in the log; its spool is moved aside."""
    _checked_name(name)
    _append_command(data, lambda current: current.remove(name))


@accounts.command("list")
@data_option
def list_(data: Path) -> None:
    """List the current accounts, one per line."""
    log = open_log(data)
    try:
        for name in _current(log).names():
            click.echo(name)
    finally:
        log.close()
