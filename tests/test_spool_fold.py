"""The pure spool fold and the spool format: records in, entries and index lines out."""

from __future__ import annotations

import mailbox
from datetime import UTC, datetime
from pathlib import Path

from eventmail.store import MemoryLog, Record
from projections.spool import Create, Deliver, Remove, Reset, SpoolFold, changed, without
from projections.spoolformat import IndexEntry, pop3_message, spool_entry, uidl
from tests.spoolkit import created, fetched, mail, noise, removed, reset, ticking_clock

MESSAGE = b"Subject: hello\r\n\r\nFrom the start\r\n>From quoted\r\n.\r\n\r\nend\r\n"


def records(*appends) -> list[Record]:
    log = MemoryLog(clock=ticking_clock())
    return [record for append in appends for record in log.append([append])]


def test_one_delivery_is_a_complete_mboxrd_entry() -> None:
    (record,) = records(mail(["alice"], MESSAGE))
    (action,) = SpoolFold().actions(record)
    assert isinstance(action, Deliver)
    assert action.entry == (
        b"From sender@example.org Sun Nov 29 23:00:00 2026\n"
        b"Return-Path: <sender@example.org>\n"
        b"Delivered-To: alice@localhost\n"
        b"Subject: hello\n"
        b"\n"
        b">From the start\n"
        b">>From quoted\n"
        b".\n"
        b"\n"
        b"end\n"
        b"\n"
    )
    assert action.seq == 1
    assert action.uidl == uidl(1, record.event.sha256)
    assert action.octets == len(pop3_message(action.entry))


def test_pop3_gets_the_stored_message_back_below_the_delivery_headers() -> None:
    (record,) = records(mail(["alice"], MESSAGE))
    (action,) = SpoolFold().actions(record)
    assert pop3_message(action.entry) == (
        b"Return-Path: <sender@example.org>\r\nDelivered-To: alice@localhost\r\n" + MESSAGE
    )


def test_null_sender_is_mailer_daemon_and_whitespace_cannot_split_the_from_line() -> None:
    fold = SpoolFold()
    (bounce,) = fold.actions(records(mail(["alice"], b"x\r\n", mail_from=""))[0])
    assert bounce.entry.startswith(
        b"From MAILER-DAEMON Sun Nov 29 23:00:00 2026\nReturn-Path: <>\n"
    )
    (odd,) = fold.actions(records(mail(["alice"], b"x\r\n", mail_from="a b\tc@x"))[0])
    assert odd.entry.startswith(b"From a_b_c@x ")


def test_each_recipient_account_gets_one_copy_with_its_own_rcpt_address() -> None:
    (record,) = records(
        mail(
            [("alice", "Alice@LOCALHOST"), ("bob", "bob@localhost"), ("alice", "a2@localhost")],
            MESSAGE,
        )
    )
    actions = SpoolFold().actions(record)
    assert [(a.account, a.seq) for a in actions] == [("alice", 1), ("bob", 1)]
    assert b"Delivered-To: Alice@LOCALHOST\n" in actions[0].entry
    assert b"Delivered-To: bob@localhost\n" in actions[1].entry


def test_postmaster_without_an_account_event_is_spooled() -> None:
    (record,) = records(mail(["postmaster"], MESSAGE))
    assert [a.account for a in SpoolFold().actions(record)] == ["postmaster"]


def test_account_and_mailbox_events_become_their_actions() -> None:
    fold = SpoolFold()
    made, gone, cleared = records(created("alice"), removed("alice"), reset("bob", [3, 1]))
    assert fold.actions(made) == [Create("alice")]
    assert fold.actions(gone) == [Remove("alice", 2)]
    assert fold.actions(cleared) == [Reset("bob", frozenset({1, 3}))]


def test_other_events_leave_spools_alone() -> None:
    fold = SpoolFold()
    for record in records(noise(), fetched("alice", 1)):
        assert fold.actions(record) == []


def test_names_that_are_not_account_names_are_never_paths() -> None:
    (record,) = records(mail(["../etc/passwd", "ok"], MESSAGE))
    assert [a.account for a in SpoolFold().actions(record)] == ["ok"]


def test_without_keeps_the_others_in_order_at_packed_offsets() -> None:
    entries = [
        IndexEntry(1, 0, 10, 12, "1.a"),
        IndexEntry(4, 10, 5, 6, "4.b"),
        IndexEntry(9, 15, 7, 8, "9.c"),
    ]
    assert changed(entries, frozenset({4, 100}))
    assert not changed(entries, frozenset({2, 100}))
    assert without(entries, frozenset({4})) == [
        (0, IndexEntry(1, 0, 10, 12, "1.a")),
        (15, IndexEntry(9, 10, 7, 8, "9.c")),
    ]


def test_python_mailbox_reads_entries_back(tmp_path: Path) -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    bodies = [MESSAGE, b"", b"Subject: x\r\n\r\n\xff\xfe 8-bit\r\n"]
    path = tmp_path / "a.TXT"
    path.write_bytes(
        b"".join(
            spool_entry(mail_from="s@x", ts=moment, delivered_to="a@localhost", message_crlf=body)
            for body in bodies
        )
    )
    box = mailbox.mbox(path)
    try:
        got = [box.get_bytes(key) for key in box.iterkeys()]
        assert [box.get_message(key).get_from() for key in box.iterkeys()] == [
            "s@x Fri Jan  2 03:04:05 2026"
        ] * 3
    finally:
        box.close()
    header = b"Return-Path: <s@x>\nDelivered-To: a@localhost\n"
    # Python's mbox does not undo mboxrd quoting: the quoted lines come back quoted.
    assert got[0] == header + b"Subject: hello\n\n>From the start\n>>From quoted\n.\n\nend\n"
    assert got[1] == header
    assert got[2] == header + b"Subject: x\n\n\xff\xfe 8-bit\n"
