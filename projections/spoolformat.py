"""The spool format (mboxrd) and the per-account index: pure functions.

A spool entry is::

    From <envelope-sender> <asctime UTC of the event>\\n
    Return-Path: <envelope-sender>\\n
    Delivered-To: <recipient address>\\n
    <stored message, LF line endings, ^>*From  lines quoted with one more '>'>\\n
    \\n

The index holds one line per message in the spool: ``seq offset length octets
uidl``, where offset/length locate the whole entry in the spool and octets is
the size of the message as POP3 sends it (CRLF, unquoted, before byte-stuffing).
"""

from __future__ import annotations

import re
from datetime import datetime

import msgspec

# Matched after a newline rather than with ^ and MULTILINE: the regex engine then
# looks for the newline literal instead of trying every position (5x faster).
# The lookahead keeps the replacement a plain literal (no template to expand).
_FROM_QUOTED = re.compile(rb"\n(?=>*From )")
_FROM_UNQUOTE = re.compile(rb"\n>(?=>*From )")
_WHITESPACE = re.compile(r"\s")


def envelope_sender(mail_from: str) -> str:
    """The sender token of the From_ line; MAILER-DAEMON for the null sender."""
    if not mail_from:
        return "MAILER-DAEMON"
    return _WHITESPACE.sub("_", mail_from)


def from_line(mail_from: str, ts: datetime) -> bytes:
    return f"From {envelope_sender(mail_from)} {ts.ctime()}\n".encode()


def quote_body(message_lf: bytes) -> bytes:
    """Give every line matching ``^>*From `` one more ``>`` (mboxrd)."""
    if b"From " not in message_lf:  # the common case: nothing to quote
        return message_lf
    return _FROM_QUOTED.sub(b"\n>", b"\n" + message_lf)[1:]


def unquote_body(quoted_lf: bytes) -> bytes:
    """Take one ``>`` off every line matching ``^>+From `` (the inverse of quote_body)."""
    if b"From " not in quoted_lf:
        return quoted_lf
    return _FROM_UNQUOTE.sub(b"\n", b"\n" + quoted_lf)[1:]


def delivery_body(*, mail_from: str, delivered_to: str, message_crlf: bytes) -> bytes:
    """The delivered message before quoting: delivery headers + message, LF, newline-ended."""
    body = delivery_header(mail_from, delivered_to) + message_crlf.replace(b"\r\n", b"\n")
    if not body.endswith(b"\n"):
        body += b"\n"
    return body


def crlf_to_lf(data: bytes) -> bytes:
    """``data.replace(b"\\r\\n", b"\\n")``, faster for the many short lines of a message."""
    return b"\n".join(data.split(b"\r\n"))


def delivery_header(mail_from: str, delivered_to: str) -> bytes:
    return f"Return-Path: <{mail_from}>\nDelivered-To: {delivered_to}\n".encode()


def pop3_octets(body_lf: bytes) -> int:
    """len(pop3_message(entry)) for the entry made from ``body_lf``, without building it."""
    return len(body_lf) + body_lf.count(b"\n")


class PreparedMessage(msgspec.Struct, frozen=True):
    """A stored message converted once, then delivered to any number of recipients.

    Quoting works line by line, so quoting the delivery header and the message
    apart gives the same bytes as quoting them together (the header ends a line).
    """

    quoted: bytes  # LF, newline-ended, mboxrd-quoted
    octets: int  # its size as POP3 sends it

    @classmethod
    def of(cls, message_crlf: bytes) -> PreparedMessage:
        lf = crlf_to_lf(message_crlf)
        if lf and not lf.endswith(b"\n"):
            lf += b"\n"
        return cls(quote_body(lf), pop3_octets(lf))

    def entry(self, from_line: bytes, header: bytes) -> tuple[bytes, int]:
        """The spool entry for one recipient and its POP3 size."""
        parts, _, octets = self.entry_parts(from_line, header)
        return b"".join(parts), octets

    def entry_parts(self, from_line: bytes, header: bytes) -> tuple[tuple[bytes, ...], int, int]:
        """The entry in pieces (written one after another, never joined), its length, octets."""
        parts = (from_line, quote_body(header), self.quoted, b"\n")
        length = len(parts[0]) + len(parts[1]) + len(parts[2]) + 1
        return parts, length, pop3_octets(header) + self.octets


def spool_entry(*, mail_from: str, ts: datetime, delivered_to: str, message_crlf: bytes) -> bytes:
    """The bytes appended to a spool for one delivered message."""
    body = delivery_body(mail_from=mail_from, delivered_to=delivered_to, message_crlf=message_crlf)
    return from_line(mail_from, ts) + quote_body(body) + b"\n"


def pop3_message(entry: bytes) -> bytes:
    """The message as POP3 serves it (CRLF, unquoted) from one spool entry."""
    _, _, rest = entry.partition(b"\n")  # drop the From_ line
    if rest.endswith(b"\n\n"):
        rest = rest[:-1]  # drop the blank separator line
    return unquote_body(rest).replace(b"\n", b"\r\n")


def uidl(seq: int, sha256_hex: str) -> str:
    """A UIDL that is stable across sessions, restarts and replays."""
    return f"{seq}.{sha256_hex[:16]}"


class IndexEntry(msgspec.Struct, frozen=True):
    seq: int  # seq of the MessageAccepted event
    offset: int  # where the entry starts in the spool
    length: int  # bytes of the entry in the spool
    octets: int  # size as sent over POP3
    uidl: str

    def line(self) -> bytes:
        return f"{self.seq} {self.offset} {self.length} {self.octets} {self.uidl}\n".encode()


def parse_index(data: bytes) -> list[IndexEntry]:
    """Parse index lines; an incomplete last line (a torn write) is ignored."""
    entries = []
    for raw in data.split(b"\n")[:-1]:
        seq, offset, length, octets, uid = raw.decode("ascii").split(" ")
        entries.append(IndexEntry(int(seq), int(offset), int(length), int(octets), uid))
    return entries
