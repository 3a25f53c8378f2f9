"""``eventmail show SEQ [--raw]``: one event in full, or its stored message bytes."""

from __future__ import annotations

from pathlib import Path

import click

from eventmail.cli.common import UserError, data_option
from eventmail.cli.reading import reading_log, record_at
from eventmail.cli.render import Row, show_text


@click.command("show")
@data_option
@click.option(
    "--raw",
    is_flag=True,
    help="Write the stored message bytes exactly as received (binary, CRLF line endings) "
    "to standard output, nothing else.",
)
@click.argument("seq", type=int)
def show(data: Path, raw: bool, seq: int) -> None:
    """Show event SEQ in full: its columns, a summary of its message and its JSON payload.

    \b
    Examples:
      eventmail show 42
      eventmail show 42 --raw > message.eml
    """
    with reading_log(data) as log:
        record = record_at(log.connection, seq)
        if record is None:
            head = log.head().seq
            holds = f"seq 1 to {head}" if head else "no events yet"
            raise UserError(f"no event with seq {seq} (the log holds {holds})")
        if raw:
            if record.message is None:
                raise UserError(f"event {seq} ({record.type}) carries no message bytes")
            click.echo(record.message, nl=False)  # bytes go to the binary stream untouched
            return
    row = Row(
        seq=record.seq,
        ts=record.ts,
        type=record.type,
        accounts=record.accounts,
        payload=record.payload.decode("utf-8", errors="replace"),
        prev_hash=record.prev_hash,
        hash=record.hash,
        message_size=None if record.message is None else len(record.message),
    )
    click.echo(show_text(row, record.message))
