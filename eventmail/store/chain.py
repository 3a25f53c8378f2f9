"""The hash chain: pure functions, no I/O.

Each record's hash covers the previous hash, its seq, time, type, accounts,
canonical payload and the SHA-256 of its message bytes. Editing, deleting or
reordering any stored event therefore changes every hash after it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import msgspec

from eventmail import events
from eventmail.events import MessageAccepted
from eventmail.store.base import GENESIS_HASH, Head, Record, parse_ts

_encoder = msgspec.json.Encoder(order="deterministic")


def record_hash(
    prev_hash: str,
    seq: int,
    ts: str,
    type_: str,
    accounts: tuple[str, ...],
    payload: bytes,
    message: bytes | None,
) -> str:
    message_digest = None if message is None else hashlib.sha256(message).hexdigest()
    material = _encoder.encode(
        [prev_hash, seq, ts, type_, list(accounts), payload.decode("utf-8"), message_digest]
    )
    return hashlib.sha256(material).hexdigest()


class ChainError(msgspec.Struct, frozen=True):
    seq: int
    reason: str


class VerifyResult(msgspec.Struct, frozen=True):
    head: Head
    error: ChainError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def check_record(record: Record, expected_seq: int, prev_hash: str) -> str | None:
    """Why ``record`` cannot follow ``prev_hash`` at ``expected_seq``; None if it can."""
    if record.seq != expected_seq:
        return f"expected seq {expected_seq}, found {record.seq} (gap or reordering)"
    if record.prev_hash != prev_hash:
        return "previous-hash link broken (an earlier event was changed or removed)"
    try:
        parse_ts(record.ts)
        event = events.decode(record.payload)
    except (ValueError, msgspec.ValidationError, msgspec.DecodeError) as exc:
        return f"does not match the schema: {exc}"
    if events.type_name(event) != record.type:
        return f"type column {record.type!r} does not match payload {events.type_name(event)!r}"
    if tuple(record.accounts) != event.accounts():
        return "accounts column does not match payload"
    if isinstance(event, MessageAccepted):
        if record.message is None:
            return "message bytes missing"
        if hashlib.sha256(record.message).hexdigest() != event.sha256:
            return "message bytes do not match their SHA-256"
    expected = record_hash(
        prev_hash,
        record.seq,
        record.ts,
        record.type,
        record.accounts,
        record.payload,
        record.message,
    )
    if record.hash != expected:
        return "hash mismatch (the event was changed)"
    return None


def verify_chain(records: Iterable[Record], expect: Head | None = None) -> VerifyResult:
    """Walk the whole log; report the head or the first bad event.

    ``expect`` is a head recorded earlier: the log must still contain it, so a
    truncated or rolled-back log is detected too.
    """
    head = Head(0, GENESIS_HASH)
    expect_seen = expect is None or expect.seq == 0
    for record in records:
        reason = check_record(record, head.seq + 1, head.hash)
        if reason is not None:
            return VerifyResult(head, ChainError(record.seq, reason))
        head = Head(record.seq, record.hash)
        if expect is not None and record.seq == expect.seq:
            if record.hash != expect.hash:
                return VerifyResult(
                    head, ChainError(record.seq, "hash differs from the expected head")
                )
            expect_seen = True
    if not expect_seen:
        assert expect is not None
        return VerifyResult(
            head,
            ChainError(
                head.seq + 1,
                f"log ends at seq {head.seq}, before the expected head {expect.seq} "
                "(truncated or rolled back)",
            ),
        )
    return VerifyResult(head)


def seal(batch: Iterable[tuple[events.Event, bytes | None]], head: Head, ts: str) -> list[Record]:
    """Number and hash a batch of new events so that it follows ``head``."""
    records = []
    prev = head.hash
    seq = head.seq
    for event, message in batch:
        seq += 1
        payload = events.encode(event)
        type_ = events.type_name(event)
        accounts = event.accounts()
        digest = record_hash(prev, seq, ts, type_, accounts, payload, message)
        records.append(
            Record(
                seq=seq,
                ts=ts,
                type=type_,
                accounts=accounts,
                payload=payload,
                message=message,
                prev_hash=prev,
                hash=digest,
            )
        )
        prev = digest
    return records
