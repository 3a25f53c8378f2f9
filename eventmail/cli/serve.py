"""``eventmail serve``: run the SMTP and POP3 servers in the foreground."""

from __future__ import annotations

from pathlib import Path

import click
import trio

from eventmail.cli.common import UserError, config_option, data_option, load_config
from eventmail.config import parse_hostport


def _address(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[str, int] | None:
    if value is None:
        return None
    try:
        return parse_hostport(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@data_option
@config_option
@click.option(
    "--smtp",
    "smtp_addr",
    metavar="HOST:PORT",
    callback=_address,
    help="Where the SMTP server listens [default: 127.0.0.1:2525, or smtp.listen].",
)
@click.option(
    "--pop3",
    "pop3_addr",
    metavar="HOST:PORT",
    callback=_address,
    help="Where the POP3 server listens [default: 127.0.0.1:1110, or pop3.listen].",
)
@click.option(
    "--domain",
    "domains",
    multiple=True,
    metavar="D",
    help="A mail domain served locally; repeatable [default: localhost, or smtp.domains].",
)
def serve(
    data: Path,
    config_file: Path | None,
    smtp_addr: tuple[str, int] | None,
    pop3_addr: tuple[str, int] | None,
    domains: tuple[str, ...],
) -> None:
    """Run the SMTP and POP3 servers until SIGINT or SIGTERM.

    Prints where it listens. Mail for ACCOUNT@DOMAIN is accepted for existing
    accounts at the configured domains; spools are kept in DATA/spool/.
    """
    # Imported here so the other commands do not pay for the servers' imports.
    from eventmail import datadir
    from eventmail.serve import Endpoints, StartupError, configure_logging
    from eventmail.serve import serve as run_serve

    cfg = load_config(data, config_file)
    try:
        endpoints = Endpoints(
            smtp=smtp_addr or parse_hostport(cfg.smtp.listen),
            pop3=pop3_addr or parse_hostport(cfg.pop3.listen),
            domains=[d.lower() for d in (domains or cfg.smtp.domains)],
        )
    except ValueError as exc:
        raise UserError(f"invalid config: {exc}") from exc
    configure_logging()
    try:
        trio.run(run_serve, data, cfg, endpoints)
    except (StartupError, datadir.DataDirBusy) as exc:
        raise UserError(str(exc)) from exc
    except KeyboardInterrupt:
        pass
