"""``eventmail replay``: in place under the lock, --into, --until SEQ|TIME, errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from eventmail import datadir
from eventmail.store import SQLiteLog
from projections import mailbox
from projections.projector import Projector
from projections.replay import ReplayError, parse_until
from projections.spoolformat import quote_body
from tests.conftest import MESSAGE_2, RunCli, SampleLog
from tests.spoolkit import snapshot

SUMMARY = re.compile(
    r"^replayed (\d+) events \(up to seq (\d+)\) into .+: (\d+) mailboxes, (\d+) bytes, [\d.]+ s$"
)


def live_projection(sample: SampleLog, spool: Path) -> dict[str, bytes]:
    log = SQLiteLog(sample.path)
    try:
        projector = Projector(spool, log)
        projector.recover()
        projector.catch_up()
    finally:
        log.close()
    return snapshot(spool)


def seqs(spool: Path, account: str) -> list[int]:
    return [entry.seq for entry in mailbox.read_index(spool, account, 10**9)]


def test_replay_in_place_builds_what_the_live_projector_builds(
    run_cli: RunCli, data_dir: Path, sample_log: SampleLog, tmp_path: Path
) -> None:
    result = run_cli("replay", "--data", str(data_dir))
    assert result.exit_code == 0, result.stderr
    match = SUMMARY.match(result.stdout.strip())
    assert match, result.stdout
    spool = data_dir / "spool"
    total = sum((spool / name).stat().st_size for name in ["alice.TXT", "bob.TXT"])
    assert match.groups() == ("12", "12", "2", str(total))
    assert snapshot(spool) == live_projection(sample_log, tmp_path / "live")
    assert seqs(spool, "alice") == [5] and seqs(spool, "bob") == [5]
    assert (spool / "removed" / "carol-12.TXT").exists()
    assert result.stderr == ""  # no progress bar when stderr is not a terminal


def test_replay_in_place_replaces_damaged_spools_and_leftovers(
    run_cli: RunCli, data_dir: Path, sample_log: SampleLog, tmp_path: Path
) -> None:
    spool = data_dir / "spool"
    spool.mkdir(parents=True)
    (spool / "alice.TXT").write_bytes(b"garbage")
    (spool / "zed.TXT").write_bytes(b"From nobody\n")
    (data_dir / "spool.replay-99999").mkdir()
    (data_dir / "spool.old-99999").mkdir()
    assert run_cli("replay", "--data", str(data_dir)).exit_code == 0
    assert snapshot(spool) == live_projection(sample_log, tmp_path / "live")
    assert sorted(p.name for p in data_dir.iterdir()) == ["events.db", "serve.lock", "spool"]


def test_replay_into_a_directory_never_touches_the_live_spools(
    run_cli: RunCli, data_dir: Path, sample_log: SampleLog, tmp_path: Path
) -> None:
    spool = data_dir / "spool"
    spool.mkdir(parents=True)
    (spool / "alice.TXT").write_bytes(b"the live one")
    copy = tmp_path / "copy"
    result = run_cli("replay", "--data", str(data_dir), "--into", str(copy))
    assert result.exit_code == 0, result.stderr
    assert snapshot(spool) == {"alice.TXT": b"the live one"}
    assert snapshot(copy) == live_projection(sample_log, tmp_path / "live")
    assert quote_body(MESSAGE_2.replace(b"\r\n", b"\n")) in (copy / "bob.TXT").read_bytes()
    # A second replay into the same directory replaces the earlier one.
    result = run_cli("replay", "--data", str(data_dir), "--into", str(copy), "--until", "4")
    assert result.exit_code == 0, result.stderr
    assert seqs(copy, "alice") == [4] and seqs(copy, "bob") == []


def test_replay_until_seq_is_the_state_at_that_seq(
    run_cli: RunCli, data_dir: Path, sample_log: SampleLog, tmp_path: Path
) -> None:
    assert run_cli("replay", "--data", str(data_dir), "--until", "7").exit_code == 0
    spool = data_dir / "spool"
    assert seqs(spool, "alice") == [4, 5]
    assert seqs(spool, "carol") == [7]
    assert not (spool / "removed").exists()
    assert mailbox.read_index(spool, "carol", 7)[0].uidl.startswith("7.")


@pytest.mark.parametrize(
    ("until", "alice", "carol_removed"),
    [
        ("2026-11-29T10:00:00Z", [4, 5], False),  # the RETR at 10:00 is in, the reset is not
        ("2026-11-29T10:00:59", [4, 5], False),  # no zone means UTC
        ("2026-11-29T11:01:00+01:00", [5], False),  # 10:01 UTC: the reset is in
        ("2026-11-29 12:00:00", [5], True),
        ("2026-11-27T00:00:00Z", None, False),  # before everything: no mailboxes
    ],
)
def test_replay_until_time(
    run_cli: RunCli,
    data_dir: Path,
    sample_log: SampleLog,
    tmp_path: Path,
    until: str,
    alice: list[int] | None,
    carol_removed: bool,
) -> None:
    copy = tmp_path / "copy"
    result = run_cli("replay", "--data", str(data_dir), "--into", str(copy), "--until", until)
    assert result.exit_code == 0, result.stderr
    if alice is None:
        assert not list(copy.glob("*.TXT"))
    else:
        assert seqs(copy, "alice") == alice
    assert (copy / "removed" / "carol-12.TXT").exists() == carol_removed


def test_replay_in_place_refuses_while_a_server_holds_the_data_dir(
    run_cli: RunCli, data_dir: Path, sample_log: SampleLog, tmp_path: Path
) -> None:
    with datadir.exclusive(data_dir, "eventmail serve"):
        line = run_cli("replay", "--data", str(data_dir)).user_error()
        assert "in use by eventmail serve" in line and "--into" in line
        assert not (data_dir / "spool").exists()
        # A point-in-time copy does not touch the live spools, so it may run.
        result = run_cli("replay", "--data", str(data_dir), "--into", str(tmp_path / "copy"))
        assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("until", ["yesterday", "-3", "2026-13-01", "12abc", ""])
def test_bad_until_is_a_one_line_error(
    run_cli: RunCli, data_dir: Path, sample_log: SampleLog, until: str
) -> None:
    line = run_cli("replay", "--data", str(data_dir), "--until", until).user_error()
    assert "--until" in line
    assert not (data_dir / "spool").exists()


def test_into_refuses_the_live_spools_and_unrelated_directories(
    run_cli: RunCli, data_dir: Path, sample_log: SampleLog, tmp_path: Path
) -> None:
    spool = data_dir / "spool"
    for into in [spool, spool / "sub", data_dir, spool / ".." / "spool"]:
        line = run_cli("replay", "--data", str(data_dir), "--into", str(into)).user_error()
        assert "live spool" in line, line
    busy = tmp_path / "photos"
    busy.mkdir()
    (busy / "cat.jpg").write_bytes(b"meow")
    line = run_cli("replay", "--data", str(data_dir), "--into", str(busy)).user_error()
    assert "not empty" in line
    assert snapshot(busy) == {"cat.jpg": b"meow"}


def test_replay_without_a_log_is_a_one_line_error(run_cli: RunCli, tmp_path: Path) -> None:
    line = run_cli("replay", "--data", str(tmp_path / "nothing")).user_error()
    assert "no event log" in line


def test_parse_until() -> None:
    assert parse_until("42").seq == 42
    assert parse_until("2026-11-29T10:00:00Z").ts == "2026-11-29T10:00:00.000000Z"
    assert parse_until("2026-11-29T12:00:00.5+02:00").ts == "2026-11-29T10:00:00.500000Z"
    with pytest.raises(ReplayError):
        parse_until("soon")


def test_progress_reports_become_bar_increments() -> None:
    from eventmail.cli.replay import _advance

    steps: list[int] = []
    advance = _advance(steps.append)
    for seq in [0, 5, 5, 12, 20]:
        advance(seq)
    assert steps == [5, 7, 8]
