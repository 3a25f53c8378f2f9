"""A replay divided among worker processes writes the same bytes as one projector."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from eventmail.store import SQLiteLog
from projections.parallel import Share
from projections.replay import Until, rebuild
from tests.conftest import RunCli
from tests.spoolkit import created, fetched, mail, noise, removed, reset, snapshot, ticking_clock

NAMES = [f"user{n}" for n in range(7)] + ["postmaster"]


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "events.db"
    log = SQLiteLog(path, clock=ticking_clock())
    try:
        for name in NAMES[:-1]:
            log.append([created(name)])
        for n in range(60):
            to = [NAMES[n % 8], NAMES[(n * 3) % 8]]
            log.append([mail(to, f"Subject: {n}\r\n\r\nFrom line {n}\r\n".encode())])
            if n % 9 == 4:
                log.append([reset(NAMES[n % 8], [9 + n, 8 + n]), fetched(NAMES[1], 10), noise()])
            if n == 30:
                log.append([removed("user3"), created("user3")])
    finally:
        log.close()
    return path


@pytest.mark.parametrize("until", [None, Until(seq=40), Until(ts="2026-11-29T23:01:00.000000Z")])
def test_parallel_replay_equals_serial_replay(tmp_path: Path, log_path: Path, until) -> None:
    log = SQLiteLog(log_path, readonly=True)
    try:
        serial = rebuild(log, tmp_path / "serial", until=until)
        opener = functools.partial(SQLiteLog, log_path, readonly=True)
        split = rebuild(log, tmp_path / "split", until=until, workers=3, opener=opener)
    finally:
        log.close()
    assert snapshot(tmp_path / "split") == snapshot(tmp_path / "serial")
    assert split == serial
    assert serial.accounts > 3
    assert not [p for p in tmp_path.iterdir() if "replay-" in p.name]


def test_shares_divide_the_accounts() -> None:
    shares = [Share(index, 3) for index in range(3)]
    for name in NAMES:
        assert sum(share(name) for share in shares) == 1


def test_cli_jobs(run_cli: RunCli, tmp_path: Path, log_path: Path) -> None:
    data = log_path.parent
    one = run_cli("replay", "--data", str(data), "--into", str(tmp_path / "one"), "--jobs", "1")
    two = run_cli("replay", "--data", str(data), "--into", str(tmp_path / "two"), "--jobs", "2")
    assert one.exit_code == two.exit_code == 0, one.stderr + two.stderr
    assert snapshot(tmp_path / "one") == snapshot(tmp_path / "two")
    assert run_cli("replay", "--data", str(data), "--jobs", "0").exit_code == 2
