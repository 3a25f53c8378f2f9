"""Every POP3 reply the server sends, as named constants (or builders for the few with numbers).

Response codes in brackets follow RFC 2449 section 8: [IN-USE], [AUTH], [SYS/TEMP].
"""

from __future__ import annotations

from typing import Final


def greeting(hostname: str) -> bytes:
    return f"+OK {hostname} eventmail POP3 server ready\r\n".encode()


# --- AUTHORIZATION ------------------------------------------------------------

USER_ACCEPTED: Final = b"+OK send PASS\r\n"
AUTH_FAILED: Final = b"-ERR [AUTH] invalid user name or password\r\n"
IN_USE: Final = b"-ERR [IN-USE] mailbox is already in use by another session\r\n"
PLAINTEXT_DISABLED: Final = b"-ERR [AUTH] plaintext login is not allowed on this connection\r\n"
PASS_WITHOUT_USER: Final = b"-ERR send USER first\r\n"
USER_MISSING: Final = b"-ERR USER needs a user name\r\n"
PASS_MISSING: Final = b"-ERR PASS needs a password\r\n"
APOP_UNSUPPORTED: Final = b"-ERR APOP is not supported; use USER and PASS\r\n"
MAILBOX_UNAVAILABLE: Final = b"-ERR [SYS/TEMP] mailbox temporarily unavailable, try again later\r\n"


def logged_in(count: int, octets: int) -> bytes:
    return f"+OK maildrop has {count} messages ({octets} octets)\r\n".encode()


# --- TRANSACTION --------------------------------------------------------------

NOOP: Final = b"+OK\r\n"
LISTING_FOLLOWS: Final = b"+OK scan listing follows\r\n"
UIDL_FOLLOWS: Final = b"+OK unique-id listing follows\r\n"
TOP_FOLLOWS: Final = b"+OK top of message follows\r\n"
NO_SUCH_MESSAGE: Final = b"-ERR no such message\r\n"
MESSAGE_DELETED: Final = b"-ERR message is deleted\r\n"
BAD_MESSAGE_NUMBER: Final = b"-ERR invalid message number\r\n"
BAD_LINE_COUNT: Final = b"-ERR invalid number of lines\r\n"
FETCH_FAILED: Final = b"-ERR [SYS/TEMP] could not record the retrieval, try again later\r\n"
END: Final = b".\r\n"


def stat(count: int, octets: int) -> bytes:
    return f"+OK {count} {octets}\r\n".encode()


def scan_line(number: int, octets: int) -> bytes:
    """``n octets`` without +OK, for LIST without an argument."""
    return f"{number} {octets}\r\n".encode()


def scan(number: int, octets: int) -> bytes:
    return b"+OK " + scan_line(number, octets)


def uidl_line(number: int, uidl: str) -> bytes:
    return f"{number} {uidl}\r\n".encode()


def uidl(number: int, uid: str) -> bytes:
    return b"+OK " + uidl_line(number, uid)


def retr(octets: int) -> bytes:
    return f"+OK {octets} octets\r\n".encode()


def deleted(number: int) -> bytes:
    return f"+OK message {number} deleted\r\n".encode()


def reset(count: int, octets: int) -> bytes:
    return f"+OK maildrop has {count} messages ({octets} octets)\r\n".encode()


# --- QUIT and UPDATE ----------------------------------------------------------

BYE: Final = b"+OK eventmail POP3 server signing off\r\n"
UPDATE_FAILED: Final = b"-ERR [SYS/TEMP] could not remove messages; nothing was deleted\r\n"


def bye_removed(count: int) -> bytes:
    return f"+OK eventmail POP3 server signing off ({count} messages deleted)\r\n".encode()


# --- any state ----------------------------------------------------------------

CAPABILITIES: Final = (
    b"+OK capability list follows\r\n"
    b"TOP\r\n"
    b"UIDL\r\n"
    b"USER\r\n"
    b"RESP-CODES\r\n"
    b"PIPELINING\r\n"
    b"EXPIRE NEVER\r\n"
    b"IMPLEMENTATION eventmail\r\n"
    b".\r\n"
)
# Without USER when plaintext login is not allowed here (RFC 2449 section 6.8).
CAPABILITIES_NO_USER: Final = CAPABILITIES.replace(b"USER\r\n", b"")

UNKNOWN_COMMAND: Final = b"-ERR unknown command\r\n"
WRONG_STATE: Final = b"-ERR command not valid in this state\r\n"
SYNTAX_ERROR: Final = b"-ERR syntax error in arguments\r\n"
NOT_UTF8: Final = b"-ERR command is not valid UTF-8\r\n"
LINE_TOO_LONG: Final = b"-ERR command line too long\r\n"
TOO_MANY_ERRORS: Final = b"-ERR too many bad commands, closing connection\r\n"

# --- sent by the shell --------------------------------------------------------

IDLE_TIMEOUT: Final = b"-ERR [SYS/TEMP] idle timeout\r\n"
SHUTTING_DOWN: Final = b"-ERR [SYS/TEMP] shutting down\r\n"
TOO_MANY_CONNECTIONS: Final = b"-ERR [SYS/TEMP] too many connections\r\n"
INTERNAL_ERROR: Final = b"-ERR [SYS/TEMP] internal server error, closing connection\r\n"
