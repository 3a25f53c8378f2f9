"""What POP3 reads: a mailbox's index up to a seq, and one message from the spool."""

from __future__ import annotations

from pathlib import Path

from projections.layout import index_path, spool_path
from projections.spoolformat import IndexEntry, parse_index, pop3_message


class SpoolMismatch(Exception):
    """The spool no longer holds the entry the index named (changed underneath)."""


def read_index(spool_dir: Path, account: str, upto_seq: int) -> list[IndexEntry]:
    """The messages in the mailbox that arrived at or before ``upto_seq``, oldest first."""
    try:
        data = index_path(spool_dir, account).read_bytes()
    except FileNotFoundError:
        return []
    return [entry for entry in parse_index(data) if entry.seq <= upto_seq]


def read_message(spool_dir: Path, account: str, entry: IndexEntry) -> bytes:
    """The message as POP3 sends it: CRLF line endings, mboxrd quoting undone."""
    try:
        with open(spool_path(spool_dir, account), "rb") as spool:
            spool.seek(entry.offset)
            data = spool.read(entry.length)
    except FileNotFoundError:
        raise SpoolMismatch(f"mailbox {account!r} is gone") from None
    if len(data) != entry.length or not data.startswith(b"From ") or not data.endswith(b"\n\n"):
        raise SpoolMismatch(f"mailbox {account!r} changed under message {entry.seq}")
    message = pop3_message(data)
    if len(message) != entry.octets:
        raise SpoolMismatch(f"mailbox {account!r} changed under message {entry.seq}")
    return message
