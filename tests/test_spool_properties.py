"""Property: any event history projects live exactly as it replays, and reads back.

Hypothesis builds histories step by step against a small model of the
mailboxes: multi-recipient mail, ``From ``/``>From `` lines, lines that are just
``.``, 8-bit and UTF-8 bodies, empty bodies, very long lines, the null sender,
resets of random subsets, account removal and re-creation. The live projector
catches up after every append; then

- a replay of the whole log gives the same files, byte for byte;
- a replay ``--until`` any seq gives what the live projector had at that seq;
- Python's ``mailbox.mbox`` reads every message back (it does not undo mboxrd
  quoting, so its bytes are compared with the quoted form, and unquoted they
  equal the stored message with LF endings);
- each index entry locates its message, and POP3 gets the stored message back
  with its octet count.
"""

from __future__ import annotations

import mailbox
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventmail.store import EventLog, MemoryLog, SQLiteLog
from projections import mailbox as pop3_mailbox
from projections.projector import Projector
from projections.replay import Until, rebuild
from projections.spoolformat import quote_body, unquote_body
from tests.spoolkit import created, fetched, mail, removed, reset, snapshot, ticking_clock

NAMES = ["alice", "bob", "postmaster", "c.d-e_f"]
SENDERS = ["", "sender@example.org", "üser@exämple.org", "odd sender@x"]

LINES = st.one_of(
    st.sampled_from([b"From me", b">From me", b">>From x", b"From", b".", b"..", b"", b" From "]),
    st.binary(max_size=30).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    st.text(max_size=20).map(lambda t: t.encode().replace(b"\r", b"").replace(b"\n", b"")),
    st.integers(1000, 3000).map(lambda n: b"x" * n),
)
MESSAGES = st.one_of(
    st.just(b""),
    st.lists(LINES, max_size=8).map(lambda lines: b"".join(line + b"\r\n" for line in lines)),
)


@dataclass
class Stored:
    seq: int
    mail_from: str
    address: str
    message: bytes

    def lf(self) -> bytes:
        header = f"Return-Path: <{self.mail_from}>\nDelivered-To: {self.address}\n".encode()
        return header + self.message.replace(b"\r\n", b"\n")

    def pop3(self) -> bytes:
        return self.lf().replace(b"\n", b"\r\n")


@dataclass
class Model:
    live: dict[str, list[Stored]] = field(default_factory=dict)
    removed: dict[str, list[Stored]] = field(default_factory=dict)


@contextmanager
def open_log(kind: str) -> Iterator[tuple[EventLog, Path]]:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        log: EventLog
        if kind == "memory":
            log = MemoryLog(clock=ticking_clock())
        else:
            log = SQLiteLog(root / "events.db", clock=ticking_clock())
        try:
            yield log, root
        finally:
            log.close()


def step(data: st.DataObject, model: Model, seq: int):
    """Draw one append that can follow the model's state; update the model."""
    kind = data.draw(
        st.sampled_from(["mail", "mail", "mail", "create", "reset", "remove", "fetch"])
    )
    if kind == "create":
        name = data.draw(st.sampled_from(NAMES))
        model.live.setdefault(name, [])
        return created(name)
    if kind == "remove":
        name = data.draw(st.sampled_from(NAMES))
        if name in model.live:
            model.removed[f"removed/{name}-{seq}.TXT"] = model.live.pop(name)
        return removed(name)
    if kind == "reset":
        name = data.draw(st.sampled_from(NAMES))
        seqs = [m.seq for m in model.live.get(name, [])]
        gone = data.draw(st.lists(st.sampled_from(seqs), unique=True) if seqs else st.just([]))
        # Seqs that are often not in this mailbox at all: the reset must ignore them.
        extra = data.draw(st.lists(st.integers(1, seq + 2), max_size=2))
        if name in model.live:
            model.live[name] = [m for m in model.live[name] if m.seq not in set(gone) | set(extra)]
        return reset(name, [*gone, *extra])
    if kind == "fetch":
        return fetched(data.draw(st.sampled_from(NAMES)), seq)
    names = data.draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4))
    rcpts = [
        (name, f"{name}@{data.draw(st.sampled_from(['localhost', 'LocalHost']))}") for name in names
    ]
    sender = data.draw(st.sampled_from(SENDERS))
    message = data.draw(MESSAGES)
    seen: set[str] = set()
    for name, address in rcpts:
        if name not in seen:
            seen.add(name)
            model.live.setdefault(name, []).append(Stored(seq, sender, address, message))
    return mail(rcpts, message, mail_from=sender)


def check_mbox(path: Path, expected: list[Stored]) -> None:
    box = mailbox.mbox(path)
    try:
        got = [box.get_bytes(key) for key in box.iterkeys()]
    finally:
        box.close()
    assert got == [quote_body(m.lf()) for m in expected]
    assert [unquote_body(g) for g in got] == [m.lf() for m in expected]


def check_pop3(spool: Path, account: str, upto: int, expected: list[Stored]) -> None:
    entries = pop3_mailbox.read_index(spool, account, upto)
    assert [e.seq for e in entries] == [m.seq for m in expected]
    for entry, stored in zip(entries, expected, strict=True):
        message = pop3_mailbox.read_message(spool, account, entry)
        assert message == stored.pop3()
        assert entry.octets == len(message)


def run_property(kind: str, data: st.DataObject) -> None:
    model = Model()
    with open_log(kind) as (log, root):
        live_dir = root / "live"
        live = Projector(live_dir, log)
        live.recover()
        states = {0: snapshot(live_dir)}
        length = data.draw(st.integers(1, 25))
        for seq in range(1, length + 1):
            log.append([step(data, model, seq)])
            assert live.catch_up() == seq
            states[seq] = snapshot(live_dir)

        replayed = root / "replayed"
        rebuild(log, replayed)
        assert snapshot(replayed) == states[length]

        for name, expected in model.live.items():
            check_mbox(live_dir / f"{name}.TXT", expected)
            check_pop3(live_dir, name, length, expected)
        for relative, expected in model.removed.items():
            check_mbox(live_dir / relative, expected)
        assert sorted(p.name for p in live_dir.glob("*.TXT")) == sorted(
            f"{n}.TXT" for n in model.live
        )

        until = data.draw(st.integers(0, length))
        point = root / "until"
        rebuild(log, point, until=Until(seq=until))
        assert snapshot(point) == states[until]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_live_equals_replay_and_reads_back_memory_log(data: st.DataObject) -> None:
    run_property("memory", data)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_live_equals_replay_and_reads_back_sqlite_log(data: st.DataObject) -> None:
    run_property("sqlite", data)
