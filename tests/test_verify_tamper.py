"""``eventmail verify`` catches tampering with a real log, each time naming the right seq.

Every test works on its own copy of one log built through ``SQLiteLog`` and
changes it with plain ``sqlite3``, the way someone with file access would.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from eventmail.store import GENESIS_HASH, SQLiteLog
from tests.conftest import RunCli, SampleLog, build_sample_log

TRIGGERS = (
    "events_append_only_update",
    "events_append_only_delete",
    "event_accounts_append_only_update",
    "event_accounts_append_only_delete",
)


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> SampleLog:
    sample = build_sample_log(tmp_path_factory.mktemp("original") / "events.db")
    assert not Path(f"{sample.path}-wal").exists()  # closed cleanly: one file holds it all
    return sample


@pytest.fixture
def copy(original: SampleLog, data_dir: Path) -> Path:
    data_dir.mkdir()
    target = data_dir / "events.db"
    shutil.copyfile(original.path, target)
    return target


@contextmanager
def tampering(path: Path, *, drop_triggers: bool = True) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        if drop_triggers:
            for name in TRIGGERS:
                conn.execute(f"DROP TRIGGER {name}")
        yield conn


def restore_schema(path: Path) -> None:
    """Put the dropped triggers back the way eventmail creates them."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA user_version = 0")
    SQLiteLog(path).close()  # re-runs the schema script (IF NOT EXISTS)


def verify(run_cli: RunCli, data: Path, *args: str) -> tuple[int, str]:
    result = run_cli("verify", "--data", str(data), *args)
    if result.exit_code == 0:
        assert result.stderr == ""
        return 0, result.stdout
    return result.exit_code, result.user_error()


def head_arg(sample: SampleLog, seq: int | None = None) -> str:
    record = sample.records[-1 if seq is None else seq - 1]
    return f"{record.seq}:{record.hash}"


# --- intact -----------------------------------------------------------------------


def test_an_intact_log_verifies_and_prints_its_head(
    run_cli: RunCli, data_dir: Path, copy: Path, original: SampleLog
) -> None:
    last = original.records[-1]
    assert verify(run_cli, data_dir) == (0, f"12 {last.hash}\n")
    assert verify(run_cli, data_dir, "--expect-head", head_arg(original)) == (
        0,
        f"12 {last.hash}\n",
    )
    # an older head is still in the log; and verify's own output is accepted as is
    assert verify(run_cli, data_dir, "--expect-head", head_arg(original, 5))[0] == 0
    assert verify(run_cli, data_dir, "--expect-head", f"12 {last.hash}")[0] == 0


def test_an_empty_log_verifies(run_cli: RunCli, data_dir: Path) -> None:
    SQLiteLog(data_dir / "events.db").close()
    assert verify(run_cli, data_dir) == (0, f"0 {GENESIS_HASH}\n")


def test_verify_never_changes_the_log(run_cli: RunCli, data_dir: Path, copy: Path) -> None:
    with tampering(copy):
        pass
    before = copy.read_bytes()
    assert verify(run_cli, data_dir)[0] == 1
    assert copy.read_bytes() == before  # opened read-only: the triggers were not re-created


# --- the triggers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET payload = '{}' WHERE seq = 4",
        "UPDATE events SET message = x'00' WHERE seq = 4",
        "DELETE FROM events WHERE seq = 12",
        "DELETE FROM events",
        "UPDATE event_accounts SET account = 'mallory' WHERE seq = 4",
        "DELETE FROM event_accounts WHERE seq = 5",
    ],
)
def test_sqlite_refuses_update_and_delete(
    run_cli: RunCli, data_dir: Path, copy: Path, original: SampleLog, statement: str
) -> None:
    with tampering(copy, drop_triggers=False) as conn, pytest.raises(sqlite3.IntegrityError) as exc:
        conn.execute(statement)
    assert "append-only" in str(exc.value)
    assert verify(run_cli, data_dir) == (0, f"12 {original.records[-1].hash}\n")


def test_sqlite_refuses_an_insert_that_leaves_a_gap(copy: Path) -> None:
    with tampering(copy, drop_triggers=False) as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO events (seq, ts, type, accounts, payload, prev_hash, hash)"
            " VALUES (14, 'x', 'x', '[]', '{}', 'x', 'x')"
        )


# --- tampering with events --------------------------------------------------------------


def test_one_changed_message_byte(
    run_cli: RunCli, data_dir: Path, copy: Path, original: SampleLog
) -> None:
    message = bytearray(original.records[4].message or b"")
    message[-3] ^= 0x01
    with tampering(copy) as conn:
        conn.execute("UPDATE events SET message = ? WHERE seq = 5", (bytes(message),))
    restore_schema(copy)
    code, line = verify(run_cli, data_dir)
    assert code == 1
    assert "at seq 5:" in line and "message bytes do not match" in line


def test_message_and_its_digest_changed_together(
    run_cli: RunCli, data_dir: Path, copy: Path
) -> None:
    forged = b"Subject: forged\r\n\r\nsend money\r\n"
    with tampering(copy) as conn:
        conn.execute(
            "UPDATE events SET message = ?, payload = json_set(payload, '$.sha256', ?)"
            " WHERE seq = 4",
            (forged, hashlib.sha256(forged).hexdigest()),
        )
    restore_schema(copy)
    code, line = verify(run_cli, data_dir)
    assert code == 1
    assert "at seq 4:" in line and "hash mismatch" in line


def test_a_deleted_middle_row(run_cli: RunCli, data_dir: Path, copy: Path) -> None:
    with tampering(copy) as conn:
        conn.execute("DELETE FROM events WHERE seq = 6")
        conn.execute("DELETE FROM event_accounts WHERE seq = 6")
    restore_schema(copy)
    code, line = verify(run_cli, data_dir)
    assert code == 1
    assert "at seq 6:" in line and "expected seq 6, found 7" in line


def test_two_payloads_swapped(run_cli: RunCli, data_dir: Path, copy: Path) -> None:
    with tampering(copy) as conn:
        (p4,), (p7,) = conn.execute("SELECT payload FROM events WHERE seq IN (4, 7) ORDER BY seq")
        conn.execute("UPDATE events SET payload = ? WHERE seq = 4", (p7,))
        conn.execute("UPDATE events SET payload = ? WHERE seq = 7", (p4,))
    restore_schema(copy)
    code, line = verify(run_cli, data_dir)
    assert code == 1
    assert "at seq 4:" in line


def test_a_cut_tail_is_caught_only_with_the_expected_head(
    run_cli: RunCli, data_dir: Path, copy: Path, original: SampleLog
) -> None:
    with tampering(copy) as conn:
        conn.execute("DELETE FROM events WHERE seq > 10")
        conn.execute("DELETE FROM event_accounts WHERE seq > 10")
    restore_schema(copy)
    assert verify(run_cli, data_dir) == (0, f"10 {original.records[9].hash}\n")
    code, line = verify(run_cli, data_dir, "--expect-head", head_arg(original))
    assert code == 1
    assert "at seq 11:" in line and "truncated or rolled back" in line


def test_a_rewritten_history_does_not_match_the_expected_head(
    run_cli: RunCli, data_dir: Path, copy: Path, original: SampleLog
) -> None:
    code, line = verify(run_cli, data_dir, "--expect-head", f"9:{'ab' * 32}")
    assert code == 1
    assert "at seq 9:" in line and "differs from the expected head" in line


# --- the account index and the schema --------------------------------------------------------


def test_an_edited_account_index(run_cli: RunCli, data_dir: Path, copy: Path) -> None:
    with tampering(copy) as conn:
        conn.execute("DELETE FROM event_accounts WHERE seq = 5 AND account = 'bob'")
    restore_schema(copy)
    code, line = verify(run_cli, data_dir)
    assert code == 1
    assert "at seq 5:" in line and "event_accounts" in line
    with tampering(copy) as conn:
        conn.execute("INSERT INTO event_accounts (account, seq) VALUES ('bob', 5), ('eve', 3)")
    restore_schema(copy)
    assert "at seq 3:" in verify(run_cli, data_dir)[1]


@pytest.mark.parametrize("trigger", [*TRIGGERS, "events_gapless"])
def test_a_dropped_trigger_fails_verification(
    run_cli: RunCli, data_dir: Path, copy: Path, trigger: str
) -> None:
    with tampering(copy, drop_triggers=False) as conn:
        conn.execute(f"DROP TRIGGER {trigger}")
    code, line = verify(run_cli, data_dir)
    assert code == 1
    assert f"schema: trigger {trigger} is missing" in line


def test_a_weakened_trigger_fails_verification(run_cli: RunCli, data_dir: Path, copy: Path) -> None:
    with tampering(copy, drop_triggers=False) as conn:
        conn.execute("DROP TRIGGER events_append_only_delete")
        conn.execute(
            "CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events"
            " WHEN 0 BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    code, line = verify(run_cli, data_dir)
    assert code == 1
    assert "trigger events_append_only_delete differs" in line


def test_a_foreign_trigger_or_missing_view_fails_verification(
    run_cli: RunCli, data_dir: Path, copy: Path
) -> None:
    with tampering(copy, drop_triggers=False) as conn:
        conn.execute("CREATE TRIGGER sneaky AFTER INSERT ON events BEGIN SELECT 1; END")
    assert "unexpected trigger sneaky" in verify(run_cli, data_dir)[1]
    with tampering(copy, drop_triggers=False) as conn:
        conn.execute("DROP TRIGGER sneaky")
        conn.execute("DROP VIEW refusals")
    assert "view refusals is missing" in verify(run_cli, data_dir)[1]


# --- usage ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["12", "12:abc", "x:" + "a" * 64, "12:" + "g" * 64, ""])
def test_bad_expect_head_is_a_usage_error(
    run_cli: RunCli, data_dir: Path, copy: Path, value: str
) -> None:
    result = run_cli("verify", "--data", str(data_dir), "--expect-head", value)
    assert result.exit_code == 2
    assert "--expect-head" in result.stderr


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("accounts", "not json", "accounts column"),
        ("accounts", "[1, 2]", "accounts column"),
        ("ts", 1764412800, "schema"),
        ("payload", "{not json", "schema"),
        ("payload", b"\xff\xfe", "schema"),
        ("type", "MessageEaten", "type column"),
        ("message", "text, not bytes", "message bytes do not match"),
        ("hash", None, "hash mismatch"),
    ],
)
def test_a_damaged_column_is_reported_not_a_crash(
    run_cli: RunCli, data_dir: Path, copy: Path, column: str, value: object, reason: str
) -> None:
    with tampering(copy) as conn:
        if column == "hash":  # NOT NULL: damage it by changing its storage class instead
            conn.execute("UPDATE events SET hash = 7 WHERE seq = 5")
        else:
            conn.execute(f"UPDATE events SET {column} = ? WHERE seq = 5", (value,))
    restore_schema(copy)
    code, line = verify(run_cli, data_dir)
    assert code == 1
    assert "at seq 5:" in line and reason in line
    # the other commands still show the damaged row
    for args in (["log"], ["log", "--json"], ["show", "5"]):
        result = run_cli(*args, "--data", str(data_dir))
        assert result.exit_code == 0, (args, result.stderr)
