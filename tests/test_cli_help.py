"""Every command and subcommand documents itself and each of its options."""

from __future__ import annotations

import click
import pytest

from eventmail.cli import main
from tests.conftest import RunCli


def command_paths(
    command: click.Command, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            found.extend(command_paths(sub, (*path, name)))
    return found


COMMANDS = command_paths(main)


def test_the_tree_holds_the_documented_commands() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    expected = {"accounts add", "accounts list", "accounts passwd", "accounts remove"}
    assert expected | {"log", "show", "verify"} <= names


@pytest.mark.parametrize(
    ("path", "command"), COMMANDS, ids=[" ".join(p) or "eventmail" for p, _ in COMMANDS]
)
def test_help_mentions_every_option(
    run_cli: RunCli, path: tuple[str, ...], command: click.Command
) -> None:
    result = run_cli(*path, "--help")
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert (command.help or "").strip(), f"{path} has no description"
    assert command.help.strip().split("\n")[0].split()[0] in text
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            for flag in (*param.opts, *param.secondary_opts):
                assert flag in text, f"{flag} missing from {path} --help"
            assert (param.help or "").strip(), f"{param.opts} has no help"
        elif isinstance(param, click.Argument):
            assert param.make_metavar(click.Context(command)) in text
    if isinstance(command, click.Group):
        for name in command.commands:
            assert name in text


LEAF_COMMANDS = [
    path for path, command in COMMANDS if path and not isinstance(command, click.Group)
]


@pytest.mark.parametrize("path", LEAF_COMMANDS, ids=[" ".join(p) for p in LEAF_COMMANDS])
def test_readme_documents_every_command(path: tuple[str, ...]) -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert f"`eventmail {' '.join(path)}" in readme, f"README does not document {path}"
