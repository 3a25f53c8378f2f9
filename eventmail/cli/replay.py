"""``eventmail replay``: rebuild the spools from the event log.

In place it holds the data-directory lock (so never while ``serve`` runs) and
swaps a freshly built spool directory in atomically. ``--into DIR`` builds a
separate point-in-time copy with the same layout as ``spool/`` (``<account>.TXT``
plus the hidden ``.index/`` and ``.checkpoint.json``, and ``removed/``) and
never touches the live spools.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click

from eventmail import datadir
from eventmail.cli.common import UserError, data_option, open_log
from eventmail.store import EventLog, SQLiteLog
from projections import replay as replaying
from projections.parallel import ParallelError

PARALLEL_FROM = 20_000  # events; below this, starting worker processes costs more than it saves
MAX_AUTO_JOBS = 4


@click.command("replay")
@data_option
@click.option(
    "--until",
    "until_text",
    metavar="SEQ|TIME",
    default=None,
    help="Stop at this seq, or after the last event stamped at or before this ISO time (UTC).",
)
@click.option(
    "--into",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the spools to DIR instead of replacing the live ones.",
)
@click.option(
    "--jobs",
    type=click.IntRange(1, 64),
    default=None,
    help="Worker processes (accounts are divided among them) [default: one per two CPUs, "
    f"up to {MAX_AUTO_JOBS}, for logs over {PARALLEL_FROM} events].",
)
def replay(data: Path, until_text: str | None, into: Path | None, jobs: int | None) -> None:
    """Rebuild every spool from the event log (or a point-in-time copy with --into)."""
    try:
        until = None if until_text is None else replaying.parse_until(until_text)
        live = data / datadir.SPOOL_DIR
        if into is not None:
            replaying.check_into(into, live)
    except replaying.ReplayError as exc:
        raise UserError(str(exc)) from exc
    log = open_log(data)
    try:
        if into is None:
            try:
                with datadir.exclusive(data, "eventmail replay"):
                    replaying.remove_leftovers(live)
                    _run(data, log, live, until, jobs)
            except datadir.DataDirBusy as exc:
                raise UserError(
                    f"cannot replay in place: {exc}; stop it first or use --into DIR"
                ) from None
        else:
            _run(data, log, into, until, jobs)
    finally:
        log.close()


def _run(
    data: Path, log: EventLog, target: Path, until: replaying.Until | None, jobs: int | None
) -> None:
    started = time.monotonic()
    total = replaying.target_seq(log, until)
    if jobs is None:
        jobs = _auto_jobs(total)
    opener = functools.partial(SQLiteLog, data / datadir.EVENTS_DB, readonly=True)
    rebuild = functools.partial(
        replaying.rebuild, log, target, until=until, workers=jobs, opener=opener
    )
    try:
        if sys.stderr.isatty() and total > 0:
            with click.progressbar(length=total, label="replaying", file=sys.stderr) as bar:
                result = rebuild(progress=_advance(bar.update))
        else:
            result = rebuild()
    except (OSError, ParallelError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UserError(f"replay into {target} failed: {reason}") from exc
    seconds = time.monotonic() - started
    click.echo(
        f"replayed {result.events} events (up to seq {result.last_seq}) into {target}: "
        f"{result.accounts} mailboxes, {result.spool_bytes} bytes, {seconds:.2f} s"
    )


def _auto_jobs(events: int) -> int:
    """One process per two CPUs (the log reading is repeated in each), for big logs only."""
    if events < PARALLEL_FROM:
        return 1
    return max(1, min((os.cpu_count() or 1) // 2, MAX_AUTO_JOBS))


def _advance(update: Callable[[int], object]) -> Callable[[int], None]:
    """Turn "reached seq N" reports into progress-bar increments."""
    shown = 0

    def advance(seq: int) -> None:
        nonlocal shown
        if seq > shown:
            update(seq - shown)
            shown = seq

    return advance
