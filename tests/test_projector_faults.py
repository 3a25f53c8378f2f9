"""Exactly once under crashes: stop the projector before every disk step, recover, compare.

A fault hook raises at the N-th step (a write, an fsync, the checkpoint's temp
file, its rename, a pending rename, ...). A fresh projector then recovers and
catches up; its spool directory must equal a clean replay of the same log, byte
for byte: no message lost, none doubled. After a crash in the middle of an
append, garbage is also added to every live spool and index, as a torn write
that reached the disk would leave.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from eventmail.store import MemoryLog
from projections.projector import Projector
from tests.spoolkit import created, fetched, mail, noise, removed, reset, snapshot, ticking_clock

APPEND_STEPS = {"open", "spool.write", "index.write", "spool.fsync", "index.fsync"}


class Crash(Exception):
    pass


def history() -> MemoryLog:
    log = MemoryLog(clock=ticking_clock())
    for append in [
        created("alice"),  # 1
        created("bob"),  # 2
        mail(["alice", "bob"], b"Subject: 1\r\n\r\nFrom a\r\n"),  # 3
        mail(["postmaster"], b"Subject: 2\r\n\r\n.\r\n"),  # 4
        mail(["alice"], b"Subject: 3\r\n\r\nthree\r\n"),  # 5
        fetched("alice", 3),  # 6
        mail(["bob"], b""),  # 7
        reset("alice", [3]),  # 8
        mail(["alice", "postmaster"], b"Subject: 4\r\n\r\n>From b\r\n"),  # 9
        removed("bob"),  # 10
        noise(),  # 11
        created("bob"),  # 12
        mail(["bob", "alice"], b"Subject: 5\r\n\r\nfive\r\n"),  # 13
        reset("alice", [5, 13]),  # 14
        reset("postmaster", [4]),  # 15
        mail(["alice"], b"Subject: 6\r\n\r\nsix\r\n"),  # 16
    ]:
        log.append([append])
    return log


LOG = history()


def run(spool: Path, fault=None) -> None:
    """The projector's life: small batches, caught up in several steps."""
    projector = Projector(spool, LOG, batch_size=3, fault=fault)
    projector.recover()
    while projector.catch_up(max_events=5) < LOG.head().seq:
        pass


def steps() -> list[str]:
    """The step names of one clean run, in order (needed to parametrize the tests)."""
    names: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        run(Path(scratch), names.append)
    return names


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    spool = tmp_path_factory.mktemp("clean")
    run(spool)
    return snapshot(spool)


def crash_at(n: int):
    calls = 0

    def fault(step: str) -> None:
        nonlocal calls
        calls += 1
        if calls == n:
            raise Crash(step)

    return fault


def tear(spool: Path) -> None:
    for path in [*spool.glob("*.TXT"), *spool.glob(".index/*.idx")]:
        with open(path, "ab") as file:
            file.write(b"From torn\n12 34")


STEPS = steps()


def test_every_kind_of_step_is_exercised() -> None:
    kinds = Counter(STEPS)
    for step in [
        "open",
        "spool.write",
        "index.write",
        "spool.fsync",
        "index.fsync",
        "dirsync",
        "checkpoint.write",
        "checkpoint.fsync",
        "checkpoint.rename",
        "checkpoint.dirsync",
        "rewrite.write",
        "rewrite.fsync",
        "rewrite.dirsync",
        "removed.mkdir",
        "pending.rename",
        "pending.dirsync",
    ]:
        assert kinds[step] > 0, step


@pytest.mark.parametrize("n", range(1, len(STEPS) + 1), ids=lambda n: f"{n}-{STEPS[n - 1]}")
def test_crash_before_any_step_then_recover_equals_clean_replay(
    tmp_path: Path, clean: dict[str, bytes], n: int
) -> None:
    with pytest.raises(Crash):
        run(tmp_path, crash_at(n))
    if STEPS[n - 1] in APPEND_STEPS:
        tear(tmp_path)
    run(tmp_path)
    assert snapshot(tmp_path) == clean


@pytest.mark.parametrize("n", range(1, len(STEPS) + 1, 7))
@pytest.mark.parametrize("again", [1, 2, 3])
def test_a_crash_during_recovery_is_recovered_too(
    tmp_path: Path, clean: dict[str, bytes], n: int, again: int
) -> None:
    with pytest.raises(Crash):
        run(tmp_path, crash_at(n))
    with contextlib.suppress(Crash):
        run(tmp_path, crash_at(again))
    run(tmp_path)
    assert snapshot(tmp_path) == clean


def test_the_same_projector_recovers_after_a_failed_step(
    tmp_path: Path, clean: dict[str, bytes]
) -> None:
    failing = True

    def fault(step: str) -> None:
        if failing and step == "index.write":
            raise OSError("disk full")

    projector = Projector(tmp_path, LOG, batch_size=3, fault=fault)
    projector.recover()
    with pytest.raises(OSError):
        projector.catch_up()
    failing = False
    assert projector.catch_up() == LOG.head().seq
    assert snapshot(tmp_path) == clean
