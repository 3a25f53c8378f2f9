"""POP3 framing, pure: the command line buffer and multi-line byte-stuffing.

Commands arrive as lines ending in CRLF (a bare LF is tolerated, as most servers
do). A line longer than the limit is discarded up to its end and reported once,
so the session can answer ``-ERR`` and carry on with the next command.

Multi-line responses (RFC 1939 section 3) are sent line by line with CRLF; a line
starting with "." gets another "." in front, and the response ends with ".CRLF".
"""

from __future__ import annotations

from typing import Final

TERMINATOR: Final = b".\r\n"


class TooLong:
    """Marker returned by ``LineBuffer.next_line`` for a discarded over-long line."""

    def __repr__(self) -> str:
        return "TOO_LONG"


TOO_LONG: Final = TooLong()


class LineBuffer:
    """Splits received bytes into command lines of at most ``max_line`` octets (CRLF included)."""

    def __init__(self, max_line: int) -> None:
        self._max_line = max_line
        self._buffer = bytearray()
        self._discarding = False  # inside an over-long line, dropping bytes up to its LF

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_line(self) -> bytes | TooLong | None:
        """The next line without its line ending, TOO_LONG, or None if incomplete."""
        end = self._buffer.find(b"\n")
        if end < 0:
            if len(self._buffer) >= self._max_line:
                # No terminator within the limit: drop what we hold, remember we are mid-line.
                self._buffer.clear()
                self._discarding = True
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        if self._discarding:
            self._discarding = False
            return TOO_LONG
        if end + 1 > self._max_line:
            return TOO_LONG
        return line[:-1] if line.endswith(b"\r") else line

    @property
    def pending(self) -> int:
        return len(self._buffer)


def as_lines(content: bytes) -> list[bytes]:
    """Split a message into lines without their endings; a missing final CRLF is tolerated.

    A bare LF also ends a line, so that no stored byte sequence can make a client
    that splits on LF see a premature ".".
    """
    if not content:
        return []
    lines = [line[:-1] if line.endswith(b"\r") else line for line in content.split(b"\n")]
    if lines[-1] == b"":
        lines.pop()
    return lines


def stuff_lines(lines: list[bytes]) -> bytes:
    """The multi-line body for ``lines``: byte-stuffed, CRLF, with the terminating ".CRLF"."""
    parts = [b"." + line if line.startswith(b".") else line for line in lines]
    parts.append(b".")
    return b"\r\n".join(parts) + b"\r\n"


def stuff(content: bytes) -> bytes:
    """Byte-stuff a whole message and terminate it, as ``stuff_lines(as_lines(content))``."""
    # The common case, a CRLF message with no bare LF, needs no split into lines:
    # every line start is the start of the message or follows a CRLF.
    if content.endswith(b"\r\n") and content.count(b"\n") == content.count(b"\r\n"):
        body = content.replace(b"\r\n.", b"\r\n..")
        if body.startswith(b"."):
            body = b"." + body
        return body + TERMINATOR
    return stuff_lines(as_lines(content))


def unstuff(stuffed: bytes) -> bytes:
    """The inverse of ``stuff`` (what a client does): the message with a final CRLF."""
    if not stuffed.endswith(TERMINATOR):
        raise ValueError("multi-line response is not terminated by .CRLF")
    body = stuffed[: -len(TERMINATOR)]
    lines = as_lines(body)
    return b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines)


def top_lines(content: bytes, body_lines: int) -> list[bytes]:
    """RFC 1939 TOP: the header lines, the blank separator line, then ``body_lines`` lines."""
    lines = as_lines(content)
    try:
        blank = lines.index(b"")
    except ValueError:
        return lines  # no body at all: everything is header
    return lines[: blank + 1 + body_lines]
