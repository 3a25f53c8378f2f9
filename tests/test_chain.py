"""The hash chain: sealing is deterministic, and every kind of tampering is detected."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventmail import events
from eventmail.events import AccountCreated, AccountRemoved, MessageAccepted, Recipient
from eventmail.store import GENESIS_HASH, Append, Head, Record, SQLiteLog
from eventmail.store.chain import record_hash, seal, verify_chain

TS = "2026-11-29T12:00:00.000001Z"


def accepted(body: bytes, to: str = "ann") -> MessageAccepted:
    return MessageAccepted(
        message_id="q",
        mail_from="s@example.org",
        recipients=(Recipient(account=to, address=f"{to}@localhost"),),
        peer="127.0.0.1:1",
        helo="h",
        size=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
    )


def created(name: str) -> AccountCreated:
    return AccountCreated(name=name, password_hash="scrypt$1$1$1$AA==$AA==")


def chain(n: int = 5) -> list[Record]:
    batch: list[tuple[events.Event, bytes | None]] = []
    for i in range(n):
        if i % 2:
            body = f"message {i}\r\n".encode()
            batch.append((accepted(body), body))
        else:
            batch.append((created(f"user{i}"), None))
    return seal(batch, Head(0, GENESIS_HASH), TS)


def test_sealed_chain_verifies_and_reports_its_head() -> None:
    records = chain()
    result = verify_chain(records)
    assert result.ok and result.error is None
    assert result.head == Head(5, records[-1].hash)


def test_empty_chain_verifies() -> None:
    result = verify_chain([])
    assert result.ok
    assert result.head == Head(0, GENESIS_HASH)


def test_sealing_is_deterministic_and_continues_a_head() -> None:
    assert chain() == chain()
    first = seal([(created("a"), None)], Head(0, GENESIS_HASH), TS)
    second = seal([(created("b"), None)], Head(1, first[0].hash), TS)
    both = seal([(created("a"), None), (created("b"), None)], Head(0, GENESIS_HASH), TS)
    assert first + second == both


def test_hash_covers_every_field() -> None:
    base = ("0" * 64, 1, TS, "AccountCreated", ("a",), b'{"x":1}', b"m")
    reference = record_hash(*base)
    variants = [
        ("1" * 64, *base[1:]),
        (base[0], 2, *base[2:]),
        (*base[:2], "2026-11-29T12:00:00.000002Z", *base[3:]),
        (*base[:3], "AccountRemoved", *base[4:]),
        (*base[:4], ("b",), *base[5:]),
        (*base[:4], ("a", "b"), *base[5:]),
        (*base[:5], b'{"x":2}', base[6]),
        (*base[:6], b"n"),
        (*base[:6], None),
        (*base[:6], b""),
    ]
    hashes = {record_hash(*v) for v in variants}
    assert reference not in hashes
    assert len(hashes) == len(variants)


def test_edited_payload_is_detected() -> None:
    records = chain()
    stolen = AccountCreated(name="user2", password_hash="scrypt$1$1$1$AA==$Zm9yZ2Vk")
    forged = msgspec.structs.replace(records[2], payload=events.encode(stolen))
    records[2] = forged
    result = verify_chain(records)
    assert result.error is not None and result.error.seq == 3
    assert "hash mismatch" in result.error.reason
    assert result.head == Head(2, records[1].hash)


def test_edited_message_bytes_are_detected() -> None:
    records = chain()
    records[1] = msgspec.structs.replace(records[1], message=b"message 1 edited\r\n")
    result = verify_chain(records)
    assert result.error is not None and result.error.seq == 2
    assert "SHA-256" in result.error.reason


def test_consistently_edited_message_and_digest_are_detected() -> None:
    records = chain()
    body = b"a forged body\r\n"
    records[1] = msgspec.structs.replace(
        records[1], message=body, payload=events.encode(accepted(body))
    )
    result = verify_chain(records)
    assert result.error is not None and result.error.seq == 2
    assert "hash mismatch" in result.error.reason


def test_rehashed_edit_breaks_the_next_link() -> None:
    records = chain()
    old = records[2]
    payload = events.encode(created("mallory"))
    new_hash = record_hash(
        old.prev_hash, old.seq, old.ts, old.type, ("mallory",), payload, old.message
    )
    records[2] = msgspec.structs.replace(old, payload=payload, accounts=("mallory",), hash=new_hash)
    result = verify_chain(records)
    assert result.error is not None and result.error.seq == 4
    assert "previous-hash link" in result.error.reason


def test_deleted_event_is_detected() -> None:
    records = chain()
    del records[2]
    result = verify_chain(records)
    assert result.error is not None and result.error.seq == 4
    assert "expected seq 3" in result.error.reason


def test_reordered_events_are_detected() -> None:
    records = chain()
    records[1], records[2] = records[2], records[1]
    result = verify_chain(records)
    assert result.error is not None and result.error.seq == 3


def test_renumbered_events_are_detected() -> None:
    records = chain()
    records[3] = msgspec.structs.replace(records[3], seq=5)
    result = verify_chain(records)
    assert result.error is not None and result.error.seq == 5


def test_type_column_must_match_the_payload() -> None:
    records = chain()
    records[0] = msgspec.structs.replace(records[0], type="AccountRemoved")
    result = verify_chain(records)
    assert result.error is not None and "type column" in result.error.reason


def test_accounts_column_must_match_the_payload() -> None:
    records = chain()
    records[0] = msgspec.structs.replace(records[0], accounts=("someone",))
    result = verify_chain(records)
    assert result.error is not None and "accounts column" in result.error.reason


@pytest.mark.parametrize(
    ("field", "value"),
    [("payload", b'{"type":"Nope"}'), ("payload", b"not json"), ("ts", "yesterday")],
)
def test_schema_violations_are_detected(field: str, value: object) -> None:
    records = chain()
    records[0] = msgspec.structs.replace(records[0], **{field: value})
    result = verify_chain(records)
    assert result.error is not None and result.error.seq == 1
    assert "schema" in result.error.reason


def test_missing_message_bytes_are_detected() -> None:
    records = chain()
    records[1] = msgspec.structs.replace(records[1], message=None)
    result = verify_chain(records)
    assert result.error is not None and "missing" in result.error.reason


def test_truncation_is_detected_against_a_recorded_head() -> None:
    records = chain()
    recorded = Head(5, records[-1].hash)
    assert verify_chain(records, expect=recorded).ok
    result = verify_chain(records[:3], expect=recorded)
    assert result.error is not None
    assert "truncated" in result.error.reason
    assert result.head == Head(3, records[2].hash)


def test_a_different_history_is_detected_against_a_recorded_head() -> None:
    records = chain()
    other = seal([(created("x"), None)] * 5, Head(0, GENESIS_HASH), TS)
    result = verify_chain(other, expect=Head(5, records[-1].hash))
    assert result.error is not None and result.error.seq == 5
    assert "expected head" in result.error.reason


@given(
    index=st.integers(min_value=0, max_value=4),
    field=st.sampled_from(["ts", "prev_hash", "hash", "payload_name"]),
    junk=st.text(min_size=1, max_size=8, alphabet="abcdefxyz0123456789"),
)
def test_any_single_edit_is_detected(index: int, field: str, junk: str) -> None:
    records = chain()
    record = records[index]
    if field == "payload_name" and record.type == "AccountCreated":
        edited = msgspec.structs.replace(
            record, payload=events.encode(created(record.event.name + junk))
        )
    elif field == "ts":
        edited = msgspec.structs.replace(record, ts=record.ts.replace("12:00", "13:00"))
    elif field in ("prev_hash", "hash"):
        value = getattr(record, field)
        edited = msgspec.structs.replace(record, **{field: (junk + value)[: len(value)]})
    else:
        edited = msgspec.structs.replace(record, payload=record.payload.replace(b"q", b"Q"))
    if edited == record:
        return  # the edit happened to change nothing
    records[index] = edited
    result = verify_chain(records)
    assert not result.ok
    assert result.error is not None and result.error.seq in (index + 1, index + 2)


def test_tampering_with_a_sqlite_log_behind_the_triggers_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    log = SQLiteLog(path)
    log.append([Append(created("ann")), Append(accepted(b"hi\r\n"), b"hi\r\n")])
    log.append([Append(AccountRemoved(name="ann"))])
    assert verify_chain(log.read_after(0)).ok
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        # Someone with write access can drop the trigger; the chain still tells.
        conn.execute("DROP TRIGGER events_append_only_update")
        conn.execute("UPDATE events SET message = ? WHERE seq = 2", (b"HI\r\n",))
    finally:
        conn.close()
    result = verify_chain(log.read_after(0))
    assert result.error is not None and result.error.seq == 2
    log.close()
