"""``eventmail accounts``: a round trip, and every refusal writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from eventmail.accounts import Accounts, hash_password
from eventmail.cli import main
from eventmail.events import AccountCreated
from eventmail.store import Append, Head, SQLiteLog
from tests.conftest import RunCli

PASSWORD = "correct horse 7 battery"
NEW_PASSWORD = "tr0ub4dor&3-staple"


def head(data: Path) -> Head:
    log = SQLiteLog(data / "events.db", readonly=True)
    try:
        return log.head()
    finally:
        log.close()


def current(data: Path) -> Accounts:
    log = SQLiteLog(data / "events.db", readonly=True)
    try:
        accounts = Accounts()
        accounts.catch_up(log)
        return accounts
    finally:
        log.close()


def add(run_cli: RunCli, data: Path, name: str, password: str = PASSWORD):
    return run_cli(
        "accounts",
        "add",
        "--data",
        str(data),
        "--password-stdin",
        "--",
        name,
        input=password + "\n",
    )


def test_add_list_passwd_remove_round_trip(run_cli: RunCli, data_dir: Path) -> None:
    result = add(run_cli, data_dir, "jjordan")
    assert (result.exit_code, result.stdout) == (0, "AccountCreated jjordan (seq 1)\n")
    prompted = run_cli(
        "accounts", "add", "--data", str(data_dir), "ana", input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert prompted.exit_code == 0, prompted.stderr
    assert PASSWORD not in prompted.stdout  # hidden input is not echoed
    listed = run_cli("accounts", "list", "--data", str(data_dir))
    assert (listed.exit_code, listed.stdout) == (0, "ana\njjordan\n")

    changed = run_cli(
        "accounts",
        "passwd",
        "--data",
        str(data_dir),
        "--password-stdin",
        "jjordan",
        input=NEW_PASSWORD + "\r\n",
    )
    assert (changed.exit_code, changed.stdout) == (0, "PasswordChanged jjordan (seq 3)\n")
    accounts = current(data_dir)
    assert accounts.check_password("jjordan", NEW_PASSWORD)
    assert not accounts.check_password("jjordan", PASSWORD)
    assert accounts.check_password("ana", PASSWORD)

    removed = run_cli("accounts", "remove", "--data", str(data_dir), "ana")
    assert (removed.exit_code, removed.stdout) == (0, "AccountRemoved ana (seq 4)\n")
    assert run_cli("accounts", "list", "--data", str(data_dir)).stdout == "jjordan\n"
    # a removed name can be created again
    assert add(run_cli, data_dir, "ana").exit_code == 0
    assert run_cli("accounts", "list", "--data", str(data_dir)).stdout == "ana\njjordan\n"


def test_the_data_directory_comes_from_the_environment(data_dir: Path) -> None:
    runner = CliRunner()
    env = {"EVENTMAIL_DATA": str(data_dir)}
    result = runner.invoke(main, ["accounts", "add", "--password-stdin", "x1"], "pw\n", env=env)
    assert result.exit_code == 0, result.output
    assert runner.invoke(main, ["accounts", "list"], env=env).stdout == "x1\n"
    assert (data_dir / "events.db").is_file()


def test_no_plain_password_is_stored(run_cli: RunCli, data_dir: Path) -> None:
    assert add(run_cli, data_dir, "alice").exit_code == 0
    run_cli(
        "accounts",
        "passwd",
        "--data",
        str(data_dir),
        "--password-stdin",
        "alice",
        input=NEW_PASSWORD + "\n",
    )
    stored = b"".join(p.read_bytes() for p in data_dir.iterdir() if p.is_file())
    assert b"scrypt$" in stored  # the hashes are there ...
    for secret in (PASSWORD, NEW_PASSWORD):
        assert secret.encode() not in stored  # ... the passwords are not
    log_output = run_cli("log", "--data", str(data_dir), "--json").stdout
    assert PASSWORD not in log_output and NEW_PASSWORD not in log_output


BAD_NAMES = ["../x", "", "a" * 300, "Upper", "-lead", "a b", "a/b", "é", "a\nb"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused_and_nothing_is_written(
    run_cli: RunCli, data_dir: Path, name: str
) -> None:
    for command in ("add", "passwd", "remove"):
        extra = ["--password-stdin"] if command != "remove" else []
        result = run_cli(
            "accounts", command, "--data", str(data_dir), *extra, "--", name, input="pw\n"
        )
        assert "invalid account name" in result.user_error()
        assert not data_dir.exists()  # not even an empty log
    assert add(run_cli, data_dir, "ok").exit_code == 0
    before = head(data_dir)
    assert "invalid account name" in add(run_cli, data_dir, name).user_error()
    assert head(data_dir) == before


def test_a_64_character_name_is_the_longest(run_cli: RunCli, data_dir: Path) -> None:
    assert add(run_cli, data_dir, "a" * 64).exit_code == 0
    add(run_cli, data_dir, "a" * 65).user_error()


def test_adding_an_existing_account_writes_nothing(run_cli: RunCli, data_dir: Path) -> None:
    assert add(run_cli, data_dir, "alice").exit_code == 0
    before = head(data_dir)
    assert "already exists" in add(run_cli, data_dir, "alice", "other").user_error()
    assert head(data_dir) == before
    assert current(data_dir).check_password("alice", PASSWORD)


def test_changing_or_removing_a_missing_account_writes_nothing(
    run_cli: RunCli, data_dir: Path
) -> None:
    assert add(run_cli, data_dir, "alice").exit_code == 0
    before = head(data_dir)
    line = run_cli("accounts", "remove", "--data", str(data_dir), "ghost").user_error()
    assert "no account named 'ghost'" in line
    passwd = run_cli(
        "accounts", "passwd", "--data", str(data_dir), "--password-stdin", "ghost", input="x\n"
    )
    assert "no account named 'ghost'" in passwd.user_error()
    assert head(data_dir) == before
    assert run_cli("accounts", "remove", "--data", str(data_dir), "alice").exit_code == 0
    after_remove = head(data_dir)
    run_cli("accounts", "remove", "--data", str(data_dir), "alice").user_error()
    assert head(data_dir) == after_remove


def test_commands_on_a_directory_without_a_log_create_nothing(
    run_cli: RunCli, data_dir: Path
) -> None:
    for args in (["remove", "ghost"], ["list"]):
        assert "no event log" in run_cli("accounts", *args, "--data", str(data_dir)).user_error()
    passwd = run_cli(
        "accounts", "passwd", "--data", str(data_dir), "--password-stdin", "ghost", input="x\n"
    )
    assert "no event log" in passwd.user_error()
    assert not data_dir.exists()


@pytest.mark.parametrize(
    ("stdin", "message"),
    [("", "no password"), ("\n", "must not be empty"), ("x" * 1025 + "\n", "at most 1024")],
)
def test_bad_passwords_write_nothing(
    run_cli: RunCli, data_dir: Path, stdin: str, message: str
) -> None:
    result = run_cli(
        "accounts", "add", "--data", str(data_dir), "--password-stdin", "alice", input=stdin
    )
    assert message in result.user_error()
    assert not data_dir.exists()


def test_a_missing_name_is_a_usage_error(run_cli: RunCli, data_dir: Path) -> None:
    assert run_cli("accounts", "add", "--data", str(data_dir)).exit_code == 2
    assert run_cli("accounts", "frobnicate", "--data", str(data_dir)).exit_code == 2


class _RacedLog(SQLiteLog):
    """Another writer creates the same account between the fold and the append."""

    def __init__(self, path: Path, intruder: AccountCreated) -> None:
        super().__init__(path)
        self.intruder: AccountCreated | None = intruder

    def append(self, batch, *, expect_seq=None):  # type: ignore[no-untyped-def]
        if self.intruder is not None:
            intruder, self.intruder = self.intruder, None
            other = SQLiteLog(self.path)
            other.append([Append(intruder)])
            other.close()
        return super().append(batch, expect_seq=expect_seq)


def test_an_add_that_lost_a_race_is_decided_again(tmp_path: Path) -> None:
    from eventmail.cli.accounts import _decide_and_append
    from eventmail.cli.common import UserError

    intruder = AccountCreated(name="twin", password_hash=hash_password("theirs"))
    log = _RacedLog(tmp_path / "events.db", intruder)
    try:
        with pytest.raises(UserError, match="already exists"):
            _decide_and_append(log, lambda current: current.create("twin", "mine"))
        created = [r for r in log.read_after(0) if r.type == "AccountCreated"]
    finally:
        log.close()
    assert len(created) == 1
