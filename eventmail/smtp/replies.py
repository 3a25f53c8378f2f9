"""Every reply the SMTP server sends, by name.

Texts carry RFC 3463 enhanced status codes (advertised as ENHANCEDSTATUSCODES,
RFC 2034) on every 2xx/4xx/5xx reply; 354 is intermediate and has none.
Replies that depend on a value (host name, size, queue id) are functions.
Tests assert against these names, never against literal strings.
"""

from __future__ import annotations

import msgspec


class Reply(msgspec.Struct, frozen=True):
    code: int
    lines: tuple[str, ...]

    def encode(self) -> bytes:
        last = len(self.lines) - 1
        return b"".join(
            f"{self.code}{' ' if i == last else '-'}{line}\r\n".encode()
            for i, line in enumerate(self.lines)
        )

    @property
    def text(self) -> str:
        """The reply as one line, e.g. for the reason of an audit event."""
        return f"{self.code} {' / '.join(self.lines)}"


def _r(code: int, text: str) -> Reply:
    return Reply(code, (text,))


# --- session -----------------------------------------------------------------


def greeting(hostname: str) -> Reply:
    return _r(220, f"{hostname} ESMTP eventmail ready")


def ehlo(hostname: str, client: str, max_size: int) -> Reply:
    return Reply(
        250,
        (
            f"{hostname} greets {client}",
            "PIPELINING",
            f"SIZE {max_size}",
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
            "SMTPUTF8",
        ),
    )


def helo(hostname: str, client: str) -> Reply:
    return _r(250, f"{hostname} greets {client}")


OK = _r(250, "2.0.0 OK")
RESET_OK = _r(250, "2.0.0 Reset OK")
SENDER_OK = _r(250, "2.1.0 Sender OK")
RECIPIENT_OK = _r(250, "2.1.5 Recipient OK")
CANNOT_VRFY = _r(252, "2.5.0 Cannot VRFY user, but will accept message and attempt delivery")
HELP = Reply(
    214,
    (
        "2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP",
        "2.0.0 See RFC 5321",
    ),
)
START_DATA = _r(354, "End data with <CR><LF>.<CR><LF>")
BYE = _r(221, "2.0.0 Bye")


def message_accepted(message_id: str) -> Reply:
    return _r(250, f"2.0.0 OK: queued as {message_id}")


# --- closing the session (4xx, then the connection is closed) -------------------

SHUTTING_DOWN = _r(421, "4.3.2 Service shutting down, closing connection")
TIMEOUT = _r(421, "4.4.2 Timeout waiting for input, closing connection")
TOO_MANY_CONNECTIONS = _r(421, "4.7.0 Too many connections, try again later")
TOO_MANY_ERRORS = _r(421, "4.7.0 Too many errors, closing connection")
INTERNAL_ERROR = _r(421, "4.3.0 Internal server error, closing connection")

# --- temporary failures -----------------------------------------------------------

LOG_WRITE_FAILED = _r(451, "4.3.0 Could not record the message, try again later")
TOO_MANY_RECIPIENTS = _r(452, "4.5.3 Too many recipients")

# --- syntax and sequence errors (the core's own) ------------------------------------

UNRECOGNISED = _r(500, "5.5.1 Command unrecognized")
LINE_TOO_LONG = _r(500, "5.5.2 Line too long")
BARE_CR_LF_IN_COMMAND = _r(500, "5.5.2 Bare CR or LF in command line")
INVALID_UTF8 = _r(500, "5.5.2 Command line is not valid UTF-8")
NUL_IN_COMMAND = _r(500, "5.5.2 NUL in command line")
NOT_IMPLEMENTED = _r(502, "5.5.1 Command not implemented")
NEED_ARGUMENT = _r(501, "5.5.4 Argument required")
NO_ARGUMENTS_ALLOWED = _r(501, "5.5.4 No arguments allowed")
HELLO_FIRST = _r(503, "5.5.1 Send EHLO or HELO first")
NESTED_MAIL = _r(503, "5.5.1 Sender already given; send RSET first")
MAIL_FIRST = _r(503, "5.5.1 Send MAIL first")
NO_VALID_RECIPIENTS = _r(554, "5.5.1 No valid recipients")

BAD_MAIL_SYNTAX = _r(501, "5.5.4 Syntax: MAIL FROM:<address> [parameters]")
BAD_RCPT_SYNTAX = _r(501, "5.5.4 Syntax: RCPT TO:<address> [parameters]")
BAD_SENDER = _r(501, "5.1.7 Bad sender address syntax")
BAD_RECIPIENT = _r(501, "5.1.3 Bad recipient address syntax")
NON_ASCII_WITHOUT_SMTPUTF8 = _r(553, "5.6.7 Non-ASCII address requires SMTPUTF8")
BAD_PARAMETER = _r(501, "5.5.4 Invalid parameter value")
DUPLICATE_PARAMETER = _r(501, "5.5.4 Parameter given twice")
UNKNOWN_PARAMETER = _r(555, "5.5.4 Parameter not recognized or not implemented")

# --- policy ---------------------------------------------------------------------------

UNKNOWN_ACCOUNT = _r(550, "5.1.1 No such mailbox here")
RELAY_DENIED = _r(550, "5.7.1 Relaying denied: not a local domain")
SIZE_EXCEEDED = _r(552, "5.3.4 Message size exceeds fixed maximum message size")

# --- message refused at the end of DATA (nothing stored) -----------------------------------

BARE_CR_LF_IN_DATA = _r(550, "5.6.11 Bare CR or LF in message (RFC 5321 2.3.8); refused")
TEXT_LINE_TOO_LONG = _r(500, "5.5.6 Text line too long (RFC 5321 4.5.3.1.6); refused")
