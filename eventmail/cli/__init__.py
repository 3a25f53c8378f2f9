"""The ``eventmail`` command line: a composition root (reads config, paths, env)."""

from __future__ import annotations

import click

from eventmail import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="eventmail")
def main() -> None:
    """eventmail: an SMTP/POP3 mail server with an auditable, replayable event log.

    Every command takes --data DIR (default ./data, or EVENTMAIL_DATA).
    """


# Each command lives in its own module and registers itself here.
from eventmail.cli.accounts import accounts  # noqa: E402

main.add_command(accounts)
from eventmail.cli.serve import serve  # noqa: E402

main.add_command(serve)
from eventmail.cli.log import log  # noqa: E402

main.add_command(log)
from eventmail.cli.show import show  # noqa: E402

main.add_command(show)
from eventmail.cli.verify import verify  # noqa: E402

main.add_command(verify)
from eventmail.cli.replay import replay  # noqa: E402

main.add_command(replay)
