"""The projector: appends, resets, removals, checkpoints, recovery, POP3 reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eventmail.store import MemoryLog
from projections import mailbox
from projections.projector import MAX_OPEN_ACCOUNTS, Projector
from projections.spoolformat import parse_index
from tests.spoolkit import created, fetched, mail, noise, removed, reset, snapshot, ticking_clock

M1 = b"Subject: one\r\n\r\nfirst\r\n"
M2 = b"Subject: two\r\n\r\nFrom here\r\n"
M3 = b"Subject: three\r\n\r\nthird\r\n"


def delivery_header(account: str) -> bytes:
    return f"Return-Path: <sender@example.org>\r\nDelivered-To: {account}@localhost\r\n".encode()


@pytest.fixture
def log() -> MemoryLog:
    return MemoryLog(clock=ticking_clock())


def project(spool: Path, log: MemoryLog) -> Projector:
    projector = Projector(spool, log)
    projector.recover()
    projector.catch_up()
    return projector


def messages(spool: Path, account: str, upto: int = 10**9) -> list[tuple[int, bytes]]:
    return [
        (entry.seq, mailbox.read_message(spool, account, entry))
        for entry in mailbox.read_index(spool, account, upto)
    ]


def test_messages_land_in_each_recipients_spool_and_index(tmp_path: Path, log: MemoryLog) -> None:
    log.append([created("alice"), created("bob")])
    log.append([mail(["alice", "bob"], M1), mail(["alice"], M2)])
    projector = project(tmp_path, log)
    assert projector.applied_seq == 4
    assert messages(tmp_path, "alice") == [
        (3, delivery_header("alice") + M1),
        (4, delivery_header("alice") + M2),
    ]
    assert messages(tmp_path, "bob") == [(3, delivery_header("bob") + M1)]
    entries = mailbox.read_index(tmp_path, "alice", 10)
    assert [e.octets for e in entries] == [len(m) for _, m in messages(tmp_path, "alice")]
    assert entries[1].offset == entries[0].length
    assert (tmp_path / "alice.TXT").stat().st_size == sum(e.length for e in entries)


def test_read_index_stops_at_the_login_seq(tmp_path: Path, log: MemoryLog) -> None:
    log.append([mail(["alice"], M1), mail(["alice"], M2), mail(["alice"], M3)])
    project(tmp_path, log)
    assert [e.seq for e in mailbox.read_index(tmp_path, "alice", 2)] == [1, 2]
    assert mailbox.read_index(tmp_path, "nobody", 10) == []


def test_created_account_has_an_empty_mailbox(tmp_path: Path, log: MemoryLog) -> None:
    log.append([created("carol")])
    project(tmp_path, log)
    assert (tmp_path / "carol.TXT").read_bytes() == b""
    assert mailbox.read_index(tmp_path, "carol", 10) == []


def test_reset_removes_exactly_those_messages_and_keeps_later_ones(
    tmp_path: Path, log: MemoryLog
) -> None:
    log.append([mail(["alice"], M1), mail(["alice"], M2), mail(["alice"], M3)])
    projector = project(tmp_path, log)
    uidls = {e.seq: e.uidl for e in mailbox.read_index(tmp_path, "alice", 10)}
    log.append([mail(["alice"], M1)])  # seq 4 arrives after the session's snapshot
    log.append([reset("alice", [1, 3])])
    projector.catch_up()
    assert messages(tmp_path, "alice") == [
        (2, delivery_header("alice") + M2),
        (4, delivery_header("alice") + M1),
    ]
    after = mailbox.read_index(tmp_path, "alice", 10)
    assert after[0].uidl == uidls[2]  # UIDLs survive the rewrite
    assert after[0].offset == 0
    assert not list(tmp_path.rglob("*.new"))


def test_reset_of_unknown_seqs_changes_nothing(tmp_path: Path, log: MemoryLog) -> None:
    log.append([mail(["alice"], M1), mail(["bob"], M2)])
    projector = project(tmp_path, log)
    before = snapshot(tmp_path)
    log.append([reset("alice", [2]), reset("nobody", [1])])
    projector.catch_up()
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k != ".checkpoint.json"} == {
        k: v for k, v in before.items() if k != ".checkpoint.json"
    }


def test_removal_moves_the_mailbox_aside_and_recreation_starts_empty(
    tmp_path: Path, log: MemoryLog
) -> None:
    log.append([created("bob"), mail(["bob"], M1)])
    projector = project(tmp_path, log)
    kept = (tmp_path / "bob.TXT").read_bytes()
    log.append([removed("bob")])  # seq 3
    projector.catch_up()
    assert not (tmp_path / "bob.TXT").exists()
    assert (tmp_path / "removed" / "bob-3.TXT").read_bytes() == kept
    assert [e.seq for e in parse_index((tmp_path / "removed" / "bob-3.idx").read_bytes())] == [2]
    log.append([created("bob"), mail(["bob"], M2)])
    projector.catch_up()
    assert messages(tmp_path, "bob") == [(5, delivery_header("bob") + M2)]


def test_checkpoint_names_the_seq_and_every_files_length(tmp_path: Path, log: MemoryLog) -> None:
    log.append([mail(["alice"], M1), noise(), fetched("alice", 1)])
    project(tmp_path, log)
    state = json.loads((tmp_path / ".checkpoint.json").read_bytes())
    assert state["seq"] == 3
    assert state["accounts"] == {
        "alice": [
            (tmp_path / "alice.TXT").stat().st_size,
            (tmp_path / ".index" / "alice.idx").stat().st_size,
        ]
    }
    assert state["pending"] == []


def test_batches_and_statistics(tmp_path: Path, log: MemoryLog) -> None:
    for _ in range(10):
        log.append([mail(["alice"], M1)])
    projector = Projector(tmp_path, log, batch_size=4)
    projector.recover()
    assert projector.catch_up(max_events=5) == 5
    stats = projector.statistics()
    assert (stats.applied_seq, stats.head_seq, stats.lag) == (5, 10, 5)
    assert (stats.events_applied, stats.batches) == (5, 2)
    assert projector.catch_up() == 10
    stats = projector.statistics()
    assert (stats.lag, stats.events_applied, stats.accounts) == (0, 10, 1)
    assert stats.spool_bytes == (tmp_path / "alice.TXT").stat().st_size


def test_recover_cuts_a_torn_append_and_resumes_exactly_once(
    tmp_path: Path, log: MemoryLog
) -> None:
    log.append([mail(["alice"], M1)])
    project(tmp_path, log)
    clean = snapshot(tmp_path)
    with open(tmp_path / "alice.TXT", "ab") as spool:
        spool.write(b"From torn write\nhalf a mess")
    with open(tmp_path / ".index" / "alice.idx", "ab") as index:
        index.write(b"2 99 12")
    (tmp_path / "stray.TXT").write_bytes(b"From x\n")
    (tmp_path / "notes.txt").write_bytes(b"an operator's file")
    projector = Projector(tmp_path, log)
    projector.recover()
    assert snapshot(tmp_path) == {**clean, "notes.txt": b"an operator's file"}
    log.append([mail(["alice"], M2)])
    projector.catch_up()
    assert [seq for seq, _ in messages(tmp_path, "alice")] == [1, 2]


def test_deleted_spool_directory_is_rebuilt_from_the_log(tmp_path: Path, log: MemoryLog) -> None:
    log.append([created("alice"), mail(["alice"], M1), removed("alice"), mail(["bob"], M2)])
    spool = tmp_path / "spool"
    project(spool, log)
    clean = snapshot(spool)
    for path in sorted(spool.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    project(spool, log)
    assert snapshot(spool) == clean


def test_a_spool_shorter_than_its_checkpoint_forces_a_rebuild(
    tmp_path: Path, log: MemoryLog
) -> None:
    log.append([mail(["alice"], M1), mail(["bob"], M2)])
    project(tmp_path, log)
    clean = snapshot(tmp_path)
    (tmp_path / "alice.TXT").write_bytes(b"")
    project(tmp_path, log)
    assert snapshot(tmp_path) == clean


def test_a_checkpoint_ahead_of_the_log_forces_a_rebuild(tmp_path: Path, log: MemoryLog) -> None:
    log.append([mail(["alice"], M1), mail(["alice"], M2)])
    project(tmp_path, log)
    shorter = MemoryLog(clock=ticking_clock())
    shorter.append([mail(["alice"], M1)])
    projector = project(tmp_path, shorter)
    assert projector.applied_seq == 1
    assert [seq for seq, _ in messages(tmp_path, "alice")] == [1]


def test_read_message_refuses_an_entry_the_spool_no_longer_holds(
    tmp_path: Path, log: MemoryLog
) -> None:
    log.append([mail(["alice"], M1), mail(["alice"], M2)])
    project(tmp_path, log)
    first, second = mailbox.read_index(tmp_path, "alice", 10)
    (tmp_path / "alice.TXT").write_bytes((tmp_path / "alice.TXT").read_bytes()[: first.length])
    with pytest.raises(mailbox.SpoolMismatch):
        mailbox.read_message(tmp_path, "alice", second)
    (tmp_path / "alice.TXT").unlink()
    with pytest.raises(mailbox.SpoolMismatch):
        mailbox.read_message(tmp_path, "alice", first)


def test_mailbox_reads_refuse_names_that_are_not_accounts(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        mailbox.read_index(tmp_path, "../x", 1)


def test_a_batch_touching_many_mailboxes_checkpoints_early(tmp_path: Path, log: MemoryLog) -> None:
    names = [f"u{n}" for n in range(MAX_OPEN_ACCOUNTS + 20)]
    log.append([mail([name], M1) for name in names])
    projector = Projector(tmp_path, log, batch_size=len(names))
    projector.recover()
    assert projector.catch_up() == len(names)
    stats = projector.statistics()
    assert (stats.batches, stats.checkpoints) == (1, 2)
    for n, name in enumerate(names):
        assert messages(tmp_path, name) == [(n + 1, delivery_header(name) + M1)]
