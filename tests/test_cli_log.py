"""``eventmail log`` and ``eventmail show`` against a real SQLite log."""

from __future__ import annotations

import importlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from eventmail.cli.render import printable
from eventmail.cli.timespec import TimeSpecError, parse_time
from eventmail.events import EVENT_TYPES, AccountCreated, MessageAccepted
from eventmail.store import Append, SQLiteLog
from tests.conftest import (
    MESSAGE_2,
    MESSAGE_3,
    CliRun,
    RunCli,
    SampleLog,
    fake_hash,
    message_event,
)

log_module = importlib.import_module("eventmail.cli.log")  # `log` is also the command
FOLLOW_DEADLINE = 30.0  # seconds; only reached if --follow is broken


def json_rows(result: CliRun) -> list[dict]:
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def seqs(run_cli: RunCli, data: Path, *args: str) -> list[int]:
    return [row["seq"] for row in json_rows(run_cli("log", "--data", str(data), "--json", *args))]


# --- the table --------------------------------------------------------------


def test_table_has_a_header_and_one_line_per_event(
    run_cli: RunCli, data_dir: Path, sample_log: SampleLog
) -> None:
    result = run_cli("log", "--data", str(data_dir))
    assert result.exit_code == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert header.split() == ["SEQ", "TIME", "(UTC)", "TYPE", "ACCOUNTS", "SUMMARY"]
    assert [int(line.split()[0]) for line in lines] == list(range(1, 13))
    line5 = lines[4].split(maxsplit=4)
    assert line5[1:4] == ["2026-11-28T12:00:00Z", "MessageAccepted", "alice,bob"]
    assert line5[4] == f"from <ana@example.org> to alice,bob {len(MESSAGE_2)} B id Q5"
    assert lines[6].endswith(f"from <> to carol {len(MESSAGE_3)} B id Q7")
    assert lines[8].split(maxsplit=4)[4] == "removed 1 message(s) (seq 4) by 127.0.0.1:1"


def test_table_escapes_control_characters_from_clients(
    run_cli: RunCli, data_dir: Path, sample_log: SampleLog
) -> None:
    result = run_cli("log", "--data", str(data_dir), "--type", "RecipientRefused")
    assert "\x1b" not in result.stdout
    assert "rcpt <ghost@localhost> refused: 550 5.1.1 no such mailbox" in result.stdout
    assert printable("a\x1b[2Jb\tc") == "a\\x1b[2Jb\\tc"


def test_empty_result_prints_nothing(
    run_cli: RunCli, data_dir: Path, sample_log: SampleLog
) -> None:
    result = run_cli("log", "--data", str(data_dir), "--after", "12")
    assert (result.exit_code, result.stdout) == (0, "")


# --- --json -------------------------------------------------------------------


def test_json_lines_carry_every_field_but_no_message_bytes(
    run_cli: RunCli, data_dir: Path, sample_log: SampleLog
) -> None:
    rows = json_rows(run_cli("log", "--data", str(data_dir), "--json"))
    assert len(rows) == len(sample_log.records)
    for row, record in zip(rows, sample_log.records, strict=True):
        assert row["seq"] == record.seq
        assert row["ts"] == record.ts
        assert row["type"] == record.type
        assert row["accounts"] == list(record.accounts)
        assert row["hash"] == record.hash
        assert row["prev_hash"] == record.prev_hash
        assert row["payload"] == json.loads(record.payload)
        assert row["message_size"] == (None if record.message is None else len(record.message))
    out = run_cli("log", "--data", str(data_dir), "--json").stdout
    assert "kitchen" not in out and "first" not in out


# --- filters ------------------------------------------------------------------


def test_account_filter_uses_the_account_index(
    run_cli: RunCli, data_dir: Path, sample_log: SampleLog
) -> None:
    assert seqs(run_cli, data_dir, "--account", "alice") == [1, 4, 5, 8, 9]
    assert seqs(run_cli, data_dir, "--account", "bob") == [2, 5, 10]
    assert seqs(run_cli, data_dir, "--account", "nobody") == []


def test_type_filter_is_repeatable_and_case_insensitive(
    run_cli: RunCli, data_dir: Path, sample_log: SampleLog
) -> None:
    assert seqs(run_cli, data_dir, "--type", "MessageAccepted") == [4, 5, 7]
    both = seqs(run_cli, data_dir, "--type", "messageaccepted", "--type", "MailboxReset")
    assert both == [4, 5, 7, 9]


def test_since_is_inclusive_and_until_exclusive(
    run_cli: RunCli, data_dir: Path, sample_log: SampleLog
) -> None:
    assert seqs(run_cli, data_dir, "--since", "2026-11-28", "--until", "2026-11-29") == [3, 4, 5]
    assert seqs(run_cli, data_dir, "--since", "2026-11-28T10:00") == list(range(4, 13))
    assert seqs(run_cli, data_dir, "--until", "2026-11-28T10:00:00Z") == [1, 2, 3]
    # 11:00 at +01:00 is 10:00 UTC
    assert seqs(run_cli, data_dir, "--since", "2026-11-29T11:00+01:00") == [8, 9, 10, 11, 12]


def test_relative_times_count_back_from_now(run_cli: RunCli, data_dir: Path) -> None:
    log = SQLiteLog(data_dir / "events.db")  # real clock: the event is "just now"
    log.append([Append(AccountCreated(name="fresh", password_hash=fake_hash("f")))])
    log.close()
    assert seqs(run_cli, data_dir, "--since", "1d") == [1]
    assert seqs(run_cli, data_dir, "--until", "1d") == []


def test_after_and_limit(run_cli: RunCli, data_dir: Path, sample_log: SampleLog) -> None:
    assert seqs(run_cli, data_dir, "--after", "9") == [10, 11, 12]
    assert seqs(run_cli, data_dir, "--limit", "2") == [1, 2]
    assert seqs(run_cli, data_dir, "--after", "4", "--limit", "2", "--type", "MessageAccepted") == [
        5,
        7,
    ]
    assert seqs(
        run_cli, data_dir, "--account", "alice", "--since", "2026-11-28", "--limit", "3"
    ) == [
        4,
        5,
        8,
    ]


def test_paging_gives_the_same_rows_as_one_page(
    run_cli: RunCli, data_dir: Path, sample_log: SampleLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(log_module, "PAGE", 2)
    assert seqs(run_cli, data_dir) == list(range(1, 13))
    assert seqs(run_cli, data_dir, "--account", "alice") == [1, 4, 5, 8, 9]
    assert seqs(run_cli, data_dir, "--limit", "5", "--after", "3") == [4, 5, 6, 7, 8]
    table = run_cli("log", "--data", str(data_dir)).stdout.splitlines()
    assert len(table) == 13 and table[0].startswith("   SEQ")


def test_follow_with_limit_ends_once_the_limit_is_reached(
    run_cli: RunCli, data_dir: Path, sample_log: SampleLog
) -> None:
    assert seqs(run_cli, data_dir, "--follow", "--limit", "3", "--type", "MessageAccepted") == [
        4,
        5,
        7,
    ]


# --- bad input ----------------------------------------------------------------


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01", "10 parsecs", ""])
def test_unparseable_time_is_a_one_line_error(
    run_cli: RunCli, data_dir: Path, sample_log: SampleLog, value: str
) -> None:
    line = run_cli("log", "--data", str(data_dir), "--since", value).user_error()
    assert "--since" in line
    assert "--until" in run_cli("log", "--data", str(data_dir), "--until", value).user_error()


def test_unknown_type_lists_the_valid_ones(
    run_cli: RunCli, data_dir: Path, sample_log: SampleLog
) -> None:
    line = run_cli("log", "--data", str(data_dir), "--type", "MessageEaten").user_error()
    assert "MessageEaten" in line
    assert all(name in line for name in EVENT_TYPES)


def test_bad_account_name_and_limit(run_cli: RunCli, data_dir: Path, sample_log: SampleLog) -> None:
    assert "account" in run_cli("log", "--data", str(data_dir), "--account", "../x").user_error()
    assert run_cli("log", "--data", str(data_dir), "--limit", "0").exit_code == 2
    assert run_cli("log", "--data", str(data_dir), "--after", "-1").exit_code == 2


def test_missing_log_is_a_one_line_error_and_creates_nothing(
    run_cli: RunCli, data_dir: Path
) -> None:
    for command in (["log"], ["show", "1"], ["verify"]):
        line = run_cli(*command, "--data", str(data_dir)).user_error()
        assert "no event log" in line
    assert not data_dir.exists()


def test_a_file_that_is_not_a_log_is_a_one_line_error(run_cli: RunCli, data_dir: Path) -> None:
    data_dir.mkdir()
    (data_dir / "events.db").write_bytes(b"this is not a database, just text" * 100)
    for command in (["log"], ["show", "1"], ["verify"]):
        assert "event log" in run_cli(*command, "--data", str(data_dir)).user_error()


# --- --follow in a real process -------------------------------------------------


def read_line(process: subprocess.Popen[bytes], deadline: float) -> str:
    """One line of the child's stdout, failing (not hanging) if none comes in time."""
    assert process.stdout is not None
    line = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no output from --follow in time (got {line!r})"
            if selector.select(remaining):
                chunk = os.read(process.stdout.fileno(), 1)
                assert chunk, "--follow exited early"
                line += chunk
    return line.decode()


def test_follow_sees_an_event_appended_by_another_connection(
    data_dir: Path, sample_log: SampleLog
) -> None:
    command = [sys.executable, "-m", "eventmail", "log", "--data", str(data_dir)]
    process = subprocess.Popen(
        [*command, "--follow", "--json", "--type", "MessageAccepted", "--after", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + FOLLOW_DEADLINE
        assert json.loads(read_line(process, deadline))["seq"] == 7
        writer = SQLiteLog(data_dir / "events.db")
        body = b"Subject: late\r\n\r\nnews\r\n"
        writer.append([Append(AccountCreated(name="dave", password_hash=fake_hash("d")))])
        (record,) = writer.append([message_event("Q14", ["dave"], body)])
        writer.close()
        row = json.loads(read_line(process, deadline))
        assert (row["seq"], row["type"], row["accounts"]) == (14, "MessageAccepted", ["dave"])
        assert row["hash"] == record.hash
        assert isinstance(record.event, MessageAccepted)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, stderr = process.communicate(timeout=FOLLOW_DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
    assert process.returncode == 0, stderr
    assert b"Traceback" not in stderr


def test_follow_stops_cleanly_on_sigterm(data_dir: Path, sample_log: SampleLog) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "eventmail", "log", "--data", str(data_dir), "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + FOLLOW_DEADLINE
        assert read_line(process, deadline).split()[0] == "SEQ"
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=FOLLOW_DEADLINE)
    assert process.returncode == 0, stderr
    assert stderr == b""


# --- show -----------------------------------------------------------------------


def test_show_prints_the_event_in_full(
    run_cli: RunCli, data_dir: Path, sample_log: SampleLog
) -> None:
    record = sample_log.records[4]
    result = run_cli("show", "--data", str(data_dir), "5")
    assert result.exit_code == 0, result.stderr
    head, payload = result.stdout.split("payload:\n")
    fields = dict(line.split(":", 1) for line in head.splitlines() if not line.startswith("  "))
    fields = {k: v.strip() for k, v in fields.items()}
    assert fields["seq"] == "5"
    assert fields["ts"] == record.ts
    assert fields["type"] == "MessageAccepted"
    assert fields["accounts"] == "alice, bob"
    assert fields["hash"] == record.hash
    assert fields["prev_hash"] == record.prev_hash
    assert fields["summary"] == f"from <ana@example.org> to alice,bob {len(MESSAGE_2)} B id Q5"
    assert fields["message"] == f"{len(MESSAGE_2)} bytes, 6 lines"
    assert fields["sha256"].endswith("(matches the event)")
    assert "  Subject: lunch?" in head
    assert json.loads(payload) == json.loads(record.payload)


def test_show_an_event_without_message(
    run_cli: RunCli, data_dir: Path, sample_log: SampleLog
) -> None:
    result = run_cli("show", "--data", str(data_dir), "11")
    assert result.exit_code == 0
    assert "message:   none" in result.stdout
    assert "pop3 login failed for 'mallory' from 203.0.113.5:999" in result.stdout


def test_show_raw_writes_the_exact_bytes(
    run_cli: RunCli, data_dir: Path, sample_log: SampleLog
) -> None:
    for seq in (4, 5, 7):
        result = run_cli("show", "--data", str(data_dir), "--raw", str(seq))
        assert result.exit_code == 0
        assert result.stdout_bytes == sample_log.records[seq - 1].message


def test_show_raw_is_byte_exact_through_a_real_pipe(data_dir: Path, sample_log: SampleLog) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "eventmail", "show", "--data", str(data_dir), "7", "--raw"],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == MESSAGE_3


@pytest.mark.parametrize("seq", ["0", "13", "99999"])
def test_show_missing_seq(run_cli: RunCli, data_dir: Path, sample_log: SampleLog, seq: str) -> None:
    line = run_cli("show", "--data", str(data_dir), seq).user_error()
    assert f"no event with seq {seq}" in line and "1 to 12" in line


def test_show_raw_without_message_bytes(
    run_cli: RunCli, data_dir: Path, sample_log: SampleLog
) -> None:
    line = run_cli("show", "--data", str(data_dir), "--raw", "1").user_error()
    assert "event 1 (AccountCreated)" in line and "no message" in line


def test_show_needs_a_number(run_cli: RunCli, data_dir: Path, sample_log: SampleLog) -> None:
    assert run_cli("show", "--data", str(data_dir), "five").exit_code == 2
    assert run_cli("show", "--data", str(data_dir)).exit_code == 2


# --- time parsing ------------------------------------------------------------------

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-29", datetime(2026, 11, 29, tzinfo=UTC)),
        ("2026-11-29T10:00", datetime(2026, 11, 29, 10, tzinfo=UTC)),
        ("2026-11-29T10:00Z", datetime(2026, 11, 29, 10, tzinfo=UTC)),
        ("2026-11-29T10:00:00+02:00", datetime(2026, 11, 29, 8, tzinfo=UTC)),
        ("2026-11-29 10:00:30.5", datetime(2026, 11, 29, 10, 0, 30, 500000, tzinfo=UTC)),
        ("10m", datetime(2026, 11, 29, 11, 50, tzinfo=UTC)),
        ("2h", datetime(2026, 11, 29, 10, tzinfo=UTC)),
        ("3d", datetime(2026, 11, 26, 12, tzinfo=UTC)),
        ("1W", datetime(2026, 11, 22, 12, tzinfo=UTC)),
        ("90s", datetime(2026, 11, 29, 11, 58, 30, tzinfo=UTC)),
        ("now", NOW),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["", "soon", "-2h", "2y", "2026-02-30", "999999999d"])
def test_parse_time_refuses(text: str) -> None:
    with pytest.raises(TimeSpecError):
        parse_time(text, NOW)
