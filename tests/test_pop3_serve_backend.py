"""The POP3 backend that ``eventmail serve`` builds: snapshots of projected mailboxes, the feed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio
import trio.testing

from eventmail.accounts import Accounts
from eventmail.serve import EventFeed, ProjectedMailboxes, ProjectionRunner
from eventmail.store import SQLiteLog
from eventmail.store.committer import GroupCommitter
from projections.mailbox import SpoolMismatch
from projections.projector import Projector
from tests.spoolkit import created, mail

FIRST = b"Subject: one\r\n\r\nFrom the start\r\n.a dot\r\n>From quoted\r\n"
SECOND = b"Subject: two\r\n\r\nsecond body\r\n"
TRACE = b"Return-Path: <sender@example.org>\r\nDelivered-To: jjordan@localhost\r\n"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def backend(tmp_path: Path):
    db = tmp_path / "events.db"
    log = SQLiteLog(db)
    projector_log = SQLiteLog(db)
    log.append([created("jjordan"), mail(["jjordan"], FIRST), mail(["jjordan"], SECOND)])
    projector = Projector(tmp_path / "spool", projector_log)
    projector.recover()
    projector.catch_up()
    runner = ProjectionRunner(projector)
    accounts = Accounts()
    feed = EventFeed(log, accounts, runner, poll_interval=0.25)
    yield ProjectedMailboxes(tmp_path / "spool", accounts, feed, runner, GroupCommitter(log))
    log.close()
    projector_log.close()


async def test_a_snapshot_serves_its_messages_until_released(
    backend: ProjectedMailboxes, tmp_path: Path
):
    before = open_fds()
    messages = await backend.open_mailbox("jjordan")
    first = await backend.read_message("jjordan", messages[0])
    second = await backend.read_message("jjordan", messages[1])
    # As delivered: trace headers in front, then the message exactly as it came in.
    assert first == TRACE + FIRST
    assert second == TRACE + SECOND
    assert [m.octets for m in messages] == [len(first), len(second)]
    # The spool is kept open for the session: a file put in its place is not read.
    spool = tmp_path / "spool" / "jjordan.TXT"
    replacement = tmp_path / "spool" / "new.TXT"
    replacement.write_bytes(b"")
    os.replace(replacement, spool)
    assert await backend.read_message("jjordan", messages[1]) == second
    assert open_fds() == before + 1
    backend.release_mailbox("jjordan")
    assert open_fds() == before


async def test_a_spool_changed_in_place_is_reported_not_served(
    backend: ProjectedMailboxes, tmp_path: Path
):
    messages = await backend.open_mailbox("jjordan")
    spool = tmp_path / "spool" / "jjordan.TXT"
    data = spool.read_bytes()
    spool.write_bytes(data[:-5])  # cut into the last message
    assert (await backend.read_message("jjordan", messages[0])).endswith(FIRST)
    with pytest.raises(SpoolMismatch):
        await backend.read_message("jjordan", messages[1])
    backend.release_mailbox("jjordan")


class CountingProjection:
    def __init__(self) -> None:
        self.kicks = 0

    def kick(self) -> None:
        self.kicks += 1


async def test_the_feed_notices_another_writer_within_a_poll_and_stays_quiet_otherwise(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
):
    db = tmp_path / "events.db"
    reader, other = SQLiteLog(db), SQLiteLog(db)
    accounts = Accounts()
    projection = CountingProjection()
    feed = EventFeed(reader, accounts, projection, poll_interval=0.25)  # type: ignore[arg-type]
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(feed.run)
            assert projection.kicks == 1  # the first look
            await trio.sleep(10.0)
            assert projection.kicks == 1  # nothing committed: no wake-ups
            other.append([created("newbie")])
            await trio.sleep(0.3)
            assert "newbie" in accounts
            assert projection.kicks == 2
            nursery.cancel_scope.cancel()
    finally:
        reader.close()
        other.close()
