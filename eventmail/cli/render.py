"""How inspection commands show events to people and to scripts (pure, no I/O).

Every string that came from a client (addresses, HELO names, reasons) passes
through ``printable`` before it reaches a terminal, so a hostile peer cannot
smuggle escape sequences into an operator's screen.
"""

from __future__ import annotations

import hashlib
import json
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any

import msgspec

from eventmail import events
from eventmail.events import (
    AccountCreated,
    AccountRemoved,
    AuthenticationFailed,
    MailboxFetched,
    MailboxReset,
    MessageAccepted,
    MessageRefused,
    PasswordChanged,
    RecipientRefused,
)

SUMMARY_HEADERS = ("From", "To", "Subject", "Date", "Message-ID")
TABLE_HEADER = f"{'SEQ':>6}  {'TIME (UTC)':<20}  {'TYPE':<20}  {'ACCOUNTS':<16}  SUMMARY"
_json = msgspec.json.Encoder()


class Row(msgspec.Struct, frozen=True, kw_only=True):
    """One event as the inspection commands read it (message bytes left out)."""

    seq: int
    ts: str
    type: str
    accounts: tuple[str, ...]
    payload: str
    prev_hash: str
    hash: str
    message_size: int | None


def printable(text: str, limit: int | None = None) -> str:
    """``text`` with control and other unprintable characters escaped, optionally cut."""
    if not text.isprintable():
        text = "".join(
            ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
        )
    if limit is not None and len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def _sender(address: str) -> str:
    return f"<{printable(address, 80)}>"


def summary(type_: str, payload: str) -> str:
    """One line saying what the event means."""
    try:
        event = events.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return f"(unreadable {printable(type_, 40)} payload) {printable(payload, 80)}"
    match event:
        case AccountCreated(name=name):
            return f"account {name} created"
        case PasswordChanged(name=name):
            return f"password of {name} changed"
        case AccountRemoved(name=name):
            return f"account {name} removed"
        case MessageAccepted():
            to = ",".join(r.account for r in event.recipients)
            return (
                f"from {_sender(event.mail_from)} to {printable(to, 80)} {event.size} B"
                f" id {printable(event.message_id, 40)}"
            )
        case MailboxFetched():
            return (
                f"{printable(event.command, 8)} of seq {event.message_seq}"
                f" uidl {printable(event.uidl, 40)} by {printable(event.peer, 60)}"
            )
        case MailboxReset():
            removed = ",".join(str(seq) for seq in event.removed)
            return (
                f"removed {len(event.removed)} message(s) (seq {printable(removed, 80)})"
                f" by {printable(event.peer, 60)}"
            )
        case RecipientRefused():
            return (
                f"rcpt {_sender(event.address)} refused: {printable(event.reason, 80)}"
                f" (from {_sender(event.mail_from)}, peer {printable(event.peer, 60)})"
            )
        case MessageRefused():
            return (
                f"from {_sender(event.mail_from)} to {printable(','.join(event.recipients), 80)}"
                f" {event.size} B refused: {printable(event.reason, 80)}"
                f" (peer {printable(event.peer, 60)})"
            )
        case AuthenticationFailed():
            return (
                f"{printable(event.protocol, 8)} login failed for"
                f" {printable(repr(event.user), 60)} from {printable(event.peer, 60)}"
            )
    return printable(payload, 100)


def table_line(row: Row) -> str:
    accounts = printable(",".join(row.accounts), 60) or "-"
    when = row.ts[:19] + "Z" if len(row.ts) >= 19 else row.ts
    return (
        f"{row.seq:>6}  {printable(when, 20):<20}  {printable(row.type, 30):<20}"
        f"  {accounts:<16}  {summary(row.type, row.payload)}"
    )


def json_line(row: Row) -> str:
    """One JSON object: the row's columns with the payload as an object, no message bytes."""
    try:
        payload: Any = msgspec.json.decode(row.payload)
    except msgspec.DecodeError:
        payload = row.payload  # a damaged payload is still shown, as a string
    return _json.encode(
        {
            "seq": row.seq,
            "ts": row.ts,
            "type": row.type,
            "accounts": list(row.accounts),
            "prev_hash": row.prev_hash,
            "hash": row.hash,
            "message_size": row.message_size,
            "payload": payload,
        }
    ).decode("utf-8")


def message_summary(message: bytes | None, payload: str) -> list[str]:
    """A few lines about the stored message bytes: size, digest, main headers."""
    if message is None:
        return ["message:   none"]
    digest = hashlib.sha256(message).hexdigest()
    try:
        claimed = json.loads(payload).get("sha256")
    except (ValueError, AttributeError):
        claimed = None
    if claimed is None:
        check = ""
    elif claimed == digest:
        check = " (matches the event)"
    else:
        check = " (DOES NOT match the sha256 in the event)"
    newlines = message.count(b"\n")
    lines = [
        f"message:   {len(message)} bytes, {newlines} lines",
        f"sha256:    {digest}{check}",
    ]
    headers = BytesHeaderParser(policy=compat32).parsebytes(message)
    for name in SUMMARY_HEADERS:
        for value in headers.get_all(name) or ():
            lines.append(f"  {name}: {printable(' '.join(str(value).split()), 200)}")
    return lines


def show_text(row: Row, message: bytes | None) -> str:
    """An event in full, for ``eventmail show``."""
    try:
        pretty = json.dumps(json.loads(row.payload), indent=2, ensure_ascii=False)
    except ValueError:
        pretty = row.payload
    lines = [
        f"seq:       {row.seq}",
        f"ts:        {printable(row.ts)}",
        f"type:      {printable(row.type)}",
        f"accounts:  {printable(', '.join(row.accounts)) or '-'}",
        f"summary:   {summary(row.type, row.payload)}",
        f"prev_hash: {printable(row.prev_hash)}",
        f"hash:      {printable(row.hash)}",
        *message_summary(message, row.payload),
        "payload:",
        printable_block(pretty),
    ]
    return "\n".join(lines)


def printable_block(text: str) -> str:
    return "\n".join(printable(line) for line in text.split("\n"))
