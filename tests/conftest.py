"""Small fixtures shared by the test modules.

- ``data_dir``: an empty data directory under ``tmp_path`` (not created yet).
- ``run_cli``: run ``eventmail ARGS...`` in-process; unexpected exceptions are
  re-raised, so a crash never passes for a clean exit 1.
- ``sample_log``: a real SQLite log in ``data_dir`` with accounts, messages with
  bytes, POP3 activity and refusals, at fixed timestamps (see ``SAMPLE``).

Hypothesis runs without per-example deadlines (see the profile below).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import settings

from eventmail.cli import main
from eventmail.events import (
    AccountCreated,
    AccountRemoved,
    AuthenticationFailed,
    Event,
    MailboxFetched,
    MailboxReset,
    MessageAccepted,
    PasswordChanged,
    Recipient,
    RecipientRefused,
)
from eventmail.store import Append, Record, SQLiteLog

# No per-example deadline: a timed assertion would fail on a loaded machine, not on a bug.
settings.register_profile("eventmail", deadline=None)
settings.load_profile("eventmail")


@dataclass
class CliRun:
    exit_code: int
    stdout: str
    stderr: str
    stdout_bytes: bytes

    def user_error(self) -> str:
        """Assert this was a user error (exit 1, one line on stderr); return that line."""
        assert self.exit_code == 1, (self.exit_code, self.stdout, self.stderr)
        lines = self.stderr.strip().splitlines()
        assert len(lines) == 1, self.stderr
        assert "Traceback" not in self.stderr
        return lines[0]


RunCli = Callable[..., CliRun]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def run_cli() -> RunCli:
    def run(*args: str, input: str | bytes | None = None) -> CliRun:
        result: Result = CliRunner().invoke(
            main, list(args), input=input, env={"EVENTMAIL_DATA": None}
        )
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return CliRun(result.exit_code, result.stdout, result.stderr, result.stdout_bytes)

    return run


def message_event(
    message_id: str, recipients: Sequence[str], body: bytes, *, sender: str = "ana@example.org"
) -> Append:
    event = MessageAccepted(
        message_id=message_id,
        mail_from=sender,
        recipients=tuple(Recipient(account=a, address=f"{a}@localhost") for a in recipients),
        peer="192.0.2.7:50123",
        helo="mx.example.org",
        size=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
    )
    return Append(event, body)


def fake_hash(name: str) -> str:
    return f"scrypt$16384$8$1$c2FsdA==${name}"


MESSAGE_1 = (
    b"Received: from mx.example.org\r\nFrom: ana@example.org\r\nSubject: first\r\n\r\nhi\r\n"
)
MESSAGE_2 = (
    b"From: ana@example.org\r\nTo: alice@localhost, bob@localhost\r\nSubject: lunch?\r\n\r\n"
    b"From the kitchen: soup.\r\n>From quoted\r\n"
)
MESSAGE_3 = b"Subject: caf\xc3\xa9 8-bit \xff\x00 bytes\r\n\r\nbinary \xfe\r\nno final newline"

# (ts, event) in log order: seq is the position, starting at 1.
SAMPLE: list[tuple[str, Append]] = [
    (
        "2026-11-27T09:00:00.000000Z",
        Append(AccountCreated(name="alice", password_hash=fake_hash("a"))),
    ),
    (
        "2026-11-27T09:05:00.000000Z",
        Append(AccountCreated(name="bob", password_hash=fake_hash("b"))),
    ),
    (
        "2026-11-28T08:00:00.000000Z",
        Append(AccountCreated(name="carol", password_hash=fake_hash("c"))),
    ),
    ("2026-11-28T10:00:00.000000Z", message_event("Q4", ["alice"], MESSAGE_1)),
    ("2026-11-28T12:00:00.000000Z", message_event("Q5", ["alice", "bob"], MESSAGE_2)),
    (
        "2026-11-29T07:00:00.000000Z",
        Append(
            RecipientRefused(
                address="ghost@localhost",
                reason="550 5.1.1 no such mailbox",
                mail_from="spam@example.net",
                peer="198.51.100.9:4444",
                helo="\x1b[2Jevil",
            )
        ),
    ),
    ("2026-11-29T09:30:00.000000Z", message_event("Q7", ["carol"], MESSAGE_3, sender="")),
    (
        "2026-11-29T10:00:00.000000Z",
        Append(
            MailboxFetched(
                account="alice", message_seq=4, uidl="u4", command="RETR", peer="127.0.0.1:1"
            )
        ),
    ),
    (
        "2026-11-29T10:01:00.000000Z",
        Append(MailboxReset(account="alice", removed=(4,), peer="127.0.0.1:1")),
    ),
    (
        "2026-11-29T11:00:00.000000Z",
        Append(PasswordChanged(name="bob", password_hash=fake_hash("b2"))),
    ),
    (
        "2026-11-29T11:30:00.000000Z",
        Append(AuthenticationFailed(protocol="pop3", user="mallory", peer="203.0.113.5:999")),
    ),
    ("2026-11-29T12:00:00.000000Z", Append(AccountRemoved(name="carol"))),
]


@dataclass
class SampleLog:
    path: Path
    records: list[Record]

    def seqs(self, predicate: Callable[[Record], bool]) -> list[int]:
        return [r.seq for r in self.records if predicate(r)]

    def event(self, seq: int) -> Event:
        return self.records[seq - 1].event


def build_sample_log(path: Path) -> SampleLog:
    """Append ``SAMPLE`` one event per transaction through ``SQLiteLog``, then close it."""
    stamps: Iterator[str] = iter(ts for ts, _ in SAMPLE)
    log = SQLiteLog(path, clock=lambda: next(stamps))
    try:
        records = [record for _, append in SAMPLE for record in log.append([append])]
    finally:
        log.close()
    return SampleLog(path, records)


@pytest.fixture
def sample_log(data_dir: Path) -> SampleLog:
    return build_sample_log(data_dir / "events.db")
