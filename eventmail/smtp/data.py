"""The DATA phase's reader: bytes in, one message (or one refusal) out. Pure.

Theory. Message content is a sequence of lines, and it ends only at CRLF "." CRLF
(RFC 5321 4.1.1.4): the "." line counts as the end only if the line before it
ended in a real CRLF. A line ending in a bare LF, or a CR anywhere but before
LF, is a smuggling hazard (RFC 5321 2.3.8); such a message is refused, but we
still read on to the real end, so no byte of it is ever taken as a command.

The reader works on whole lines in bulk (``bytes`` methods, not a Python loop
per byte): it keeps only the current incomplete line. Memory stays bounded:
content over the size limit and the rest of an over-long line are counted and
dropped, never buffered.
"""

from __future__ import annotations

import msgspec

from eventmail.smtp import replies
from eventmail.smtp.replies import Reply

_END = b"\r\n.\r\n"


class DataResult(msgspec.Struct, frozen=True):
    message: bytes  # dot-unstuffed content with CRLF endings (b"" when refused)
    refusal: Reply | None  # why the message is refused, None if it is good
    received: int  # octets of content received, dropped ones included
    rest: bytes  # input after the end-of-data line: the next commands


class DataReader:
    def __init__(self, *, max_size: int, max_line: int) -> None:
        self._max_size = max_size
        self._max_line = max_line  # octets per line including CRLF
        self._partial = b""  # the incomplete last line
        self._parts: list[bytes] = []
        self._size = 0  # octets kept (unstuffed)
        self._received = 0
        self._after_crlf = True  # the DATA command line ended in CRLF
        self._in_long_line = False  # dropping the rest of an over-long line
        self._refusal: Reply | None = None

    def feed(self, data: bytes) -> DataResult | None:
        """Take more input; the result once the end of data was seen, else None."""
        buf = self._partial + data if self._partial else data
        last_lf = buf.rfind(b"\n")
        if last_lf < 0:
            self._partial = buf
            self._check_partial()
            return None
        lines, self._partial = buf[: last_lf + 1], buf[last_lf + 1 :]
        if self._in_long_line:
            lines = self._finish_long_line(lines)
        prefix = b"\r\n" if self._after_crlf else b"\n"
        end = (prefix + lines).find(_END)
        if end >= 0:
            body_end = end + 2 - len(prefix)
            self._take(lines[:body_end])
            rest = lines[body_end + 3 :] + self._partial
            return DataResult(
                message=b"".join(self._parts) if self._refusal is None else b"",
                refusal=self._refusal,
                received=self._received,
                rest=rest,
            )
        self._take(lines)
        if lines:
            self._after_crlf = lines.endswith(b"\r\n")
        self._check_partial()
        return None

    def _take(self, lines: bytes) -> None:
        """Account for complete lines of content (not the end-of-data line)."""
        self._received += len(lines)
        if self._refusal is not None or not lines:
            return
        crlf = lines.count(b"\r\n")
        if lines.count(b"\n") != crlf or lines.count(b"\r") != crlf:
            self._refuse(replies.BARE_CR_LF_IN_DATA)
        elif len(lines) >= self._max_line and _longest_line(lines) > self._max_line:
            self._refuse(replies.TEXT_LINE_TOO_LONG)
        else:
            unstuffed = (b"\n" + lines).replace(b"\n.", b"\n")[1:]
            self._size += len(unstuffed)
            if self._size > self._max_size:
                self._refuse(replies.SIZE_EXCEEDED)
            else:
                self._parts.append(unstuffed)

    def _refuse(self, reply: Reply) -> None:
        self._refusal = reply
        self._parts.clear()

    def _check_partial(self) -> None:
        """An incomplete line already over the limit: refuse and drop all but its last byte.

        The last byte is kept so the line's ending (CRLF or bare LF) is still seen.
        """
        if len(self._partial) < self._max_line:
            return
        if self._refusal is None:
            self._refuse(replies.TEXT_LINE_TOO_LONG)
        self._received += len(self._partial) - 1
        self._partial = self._partial[-1:]
        self._in_long_line = True

    def _finish_long_line(self, lines: bytes) -> bytes:
        """Drop the tail of the over-long line; return the lines after it."""
        lf = lines.index(b"\n")
        self._received += lf + 1
        self._after_crlf = lf > 0 and lines[lf - 1] == 0x0D
        self._in_long_line = False
        return lines[lf + 1 :]


def _longest_line(lines: bytes) -> int:
    """Octets of the longest line, its LF included (C-speed, unlike a regex scan)."""
    return max(map(len, lines.split(b"\n"))) + 1
