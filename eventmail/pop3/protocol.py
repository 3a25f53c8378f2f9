"""The POP3 session as a sans-IO state machine (RFC 1939, RFC 2449).

Bytes go in with ``receive_data``; ``next_event`` hands out what the shell must do:
send a reply (``SendReply``), answer a request (``Authenticate``, ``OpenMailbox``,
``FetchMessage``, ``CommitDeletions``), or close (``Close``). It returns ``NEED_DATA``
when it has nothing to do until more input arrives.

States (RFC 1939 section 3) and how they change::

    AUTHORIZATION --USER, PASS--> Authenticate --authenticated()--> OpenMailbox
        OpenMailbox --mailbox_opened()--> TRANSACTION
        Authenticate --authentication_failed() / mailbox_in_use()--> AUTHORIZATION
        OpenMailbox --mailbox_unavailable()--> AUTHORIZATION
    AUTHORIZATION --QUIT--> CLOSED            (nothing is deleted)
    TRANSACTION --RETR, TOP--> FetchMessage --message_fetched() / fetch_failed()--> TRANSACTION
    TRANSACTION --QUIT, no deletions--> CLOSED
    TRANSACTION --QUIT with deletions--> UPDATE: CommitDeletions
        --deletions_committed()--> CLOSED with +OK
        --deletions_failed()--> CLOSED with -ERR [SYS/TEMP]; nothing deleted

While a request is outstanding the machine takes no further input: pipelined
commands wait in the buffer until the shell answers. So no reply that depends on
the shell's answer (RETR content once its fetch record is queued, QUIT's +OK once
the MailboxReset is durable) can be produced before it.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Final, Literal

import msgspec

from eventmail.pop3 import replies
from eventmail.pop3.backend import MailboxMessage
from eventmail.pop3.framing import TOO_LONG, LineBuffer, stuff, stuff_lines, top_lines


class State(enum.Enum):
    AUTHORIZATION = "AUTHORIZATION"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"
    CLOSED = "CLOSED"


# --- what next_event hands the shell -----------------------------------------


class SendReply(msgspec.Struct, frozen=True):
    data: bytes


class Authenticate(msgspec.Struct, frozen=True):
    user: str
    password: str


class OpenMailbox(msgspec.Struct, frozen=True):
    account: str


class FetchMessage(msgspec.Struct, frozen=True):
    number: int  # the message number the client used
    message: MailboxMessage
    kind: Literal["RETR", "TOP"]
    lines: int | None  # body lines for TOP


class CommitDeletions(msgspec.Struct, frozen=True):
    account: str
    seqs: tuple[int, ...]


class Close(msgspec.Struct, frozen=True):
    reason: Literal["quit", "eof", "errors"]


class NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()

Request = Authenticate | OpenMailbox | FetchMessage | CommitDeletions
_REQUESTS = (Authenticate, OpenMailbox, FetchMessage, CommitDeletions)  # a tuple: no union per call
Pop3Event = SendReply | Request | Close

_NO_ARGS = frozenset({"STAT", "NOOP", "RSET", "QUIT", "CAPA"})
_TRANSACTION_ONLY = frozenset({"STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL"})
_AUTHORIZATION_ONLY = frozenset({"USER", "PASS", "APOP"})


class ProtocolMisuse(RuntimeError):
    """The shell broke the contract (e.g. asked for input while a request is open)."""


class Pop3Connection:
    def __init__(
        self,
        *,
        hostname: str,
        max_line: int = 255,
        error_budget: int = 10,
        plaintext_allowed: bool = True,
    ) -> None:
        self.state = State.AUTHORIZATION
        self.account: str | None = None
        self._lines = LineBuffer(max_line)
        self._error_budget = error_budget
        self._errors = 0
        self._plaintext_allowed = plaintext_allowed
        self._user: str | None = None
        self._pending: Request | None = None
        self._eof = False
        self._out: deque[Pop3Event] = deque([SendReply(replies.greeting(hostname))])
        self._messages: list[MailboxMessage] = []
        self._deleted: set[int] = set()  # message numbers marked by DELE

    # --- input and output -----------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the client; ``b""`` means the client closed its side."""
        if data:
            self._lines.feed(data)
        else:
            self._eof = True

    def next_event(self) -> Pop3Event | NeedData:
        while not self._out:
            if self._pending is not None:
                raise ProtocolMisuse(f"waiting for the answer to {self._pending!r}")
            if self.state is State.CLOSED:
                raise ProtocolMisuse("the session is closed")
            line = self._lines.next_line()
            if line is None:
                if self._eof:
                    self._close("eof")
                    continue
                return NEED_DATA
            if line is TOO_LONG:
                self._error(replies.LINE_TOO_LONG)
            else:
                assert isinstance(line, bytes)
                self._command(line)
        event = self._out.popleft()
        if isinstance(event, _REQUESTS):
            self._pending = event
        return event

    # --- answers from the shell ------------------------------------------------

    def authenticated(self, account: str) -> None:
        self._answer(Authenticate)
        self.account = account
        self._emit_request(OpenMailbox(account))

    def authentication_failed(self) -> None:
        self._answer(Authenticate)
        self._user = None
        self._error(replies.AUTH_FAILED)

    def mailbox_in_use(self) -> None:
        self._answer(Authenticate)
        self._user = None
        self._reply(replies.IN_USE)

    def mailbox_opened(self, messages: list[MailboxMessage]) -> None:
        self._answer(OpenMailbox)
        self._messages = list(messages)
        self.state = State.TRANSACTION
        self._reply(replies.logged_in(*self._totals()))

    def mailbox_unavailable(self) -> None:
        self._answer(OpenMailbox)
        self.account = None
        self._user = None
        self._reply(replies.MAILBOX_UNAVAILABLE)

    def message_fetched(self, content: bytes) -> None:
        request = self._answer(FetchMessage)
        assert isinstance(request, FetchMessage)
        if request.kind == "RETR":
            self._reply(replies.retr(request.message.octets) + stuff(content))
        else:
            lines = top_lines(content, request.lines or 0)
            self._reply(replies.TOP_FOLLOWS + stuff_lines(lines))

    def fetch_failed(self) -> None:
        self._answer(FetchMessage)
        self._reply(replies.FETCH_FAILED)

    def deletions_committed(self) -> None:
        self._answer(CommitDeletions)
        self._reply(replies.bye_removed(len(self._deleted)))
        self._close("quit")

    def deletions_failed(self) -> None:
        self._answer(CommitDeletions)
        self._reply(replies.UPDATE_FAILED)
        self._close("quit")

    # --- internals --------------------------------------------------------------

    def _answer(self, kind: type[Request]) -> Request:
        request = self._pending
        if not isinstance(request, kind):
            raise ProtocolMisuse(f"no {kind.__name__} request is waiting (have {request!r})")
        self._pending = None
        return request

    def _reply(self, data: bytes) -> None:
        self._out.append(SendReply(data))

    def _emit_request(self, request: Request) -> None:
        self._out.append(request)

    def _close(self, reason: Literal["quit", "eof", "errors"]) -> None:
        self.state = State.CLOSED
        self._out.append(Close(reason))

    def _error(self, reply: bytes) -> None:
        """A client mistake: reply, and close once the bad-command budget is spent."""
        self._reply(reply)
        self._errors += 1
        if self._errors >= self._error_budget:
            self._reply(replies.TOO_MANY_ERRORS)
            self._close("errors")

    def _totals(self) -> tuple[int, int]:
        live = [m for n, m in enumerate(self._messages, 1) if n not in self._deleted]
        return len(live), sum(m.octets for m in live)

    def _command(self, line: bytes) -> None:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self._error(replies.NOT_UTF8)
            return
        keyword, _, rest = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "PASS":
            self._pass(rest)
            return
        args = rest.split()
        if keyword == "CAPA" and not args:
            self._reply(
                replies.CAPABILITIES if self._plaintext_allowed else replies.CAPABILITIES_NO_USER
            )
        elif keyword == "QUIT" and not args:
            self._quit()
        elif self.state is State.AUTHORIZATION:
            self._authorization(keyword, args, rest.strip())
        elif keyword in _TRANSACTION_ONLY:
            self._transaction(keyword, args)
        elif keyword in _AUTHORIZATION_ONLY:
            self._error(replies.WRONG_STATE)
        elif keyword in _NO_ARGS:
            self._error(replies.SYNTAX_ERROR)
        else:
            self._error(replies.UNKNOWN_COMMAND)

    def _authorization(self, keyword: str, args: list[str], rest: str) -> None:
        if keyword == "USER":
            if not self._plaintext_allowed:
                self._error(replies.PLAINTEXT_DISABLED)
            elif not rest:
                self._error(replies.USER_MISSING)
            else:
                self._user = rest
                self._reply(replies.USER_ACCEPTED)
        elif keyword == "APOP":
            self._error(replies.APOP_UNSUPPORTED)
        elif keyword in _TRANSACTION_ONLY:
            self._error(replies.WRONG_STATE)
        elif keyword in _NO_ARGS:
            self._error(replies.SYNTAX_ERROR)
        else:
            self._error(replies.UNKNOWN_COMMAND)

    def _pass(self, password: str) -> None:
        # The whole rest of the line is the password: it may contain spaces (RFC 1939 7).
        if self.state is not State.AUTHORIZATION:
            self._error(replies.WRONG_STATE)
        elif not self._plaintext_allowed:
            self._error(replies.PLAINTEXT_DISABLED)
        elif self._user is None:
            self._error(replies.PASS_WITHOUT_USER)
        elif not password:
            self._error(replies.PASS_MISSING)
        else:
            self._emit_request(Authenticate(self._user, password))

    def _quit(self) -> None:
        if self.state is State.TRANSACTION and self._deleted:
            assert self.account is not None
            self.state = State.UPDATE
            seqs = tuple(self._messages[n - 1].seq for n in sorted(self._deleted))
            self._emit_request(CommitDeletions(self.account, seqs))
            return
        self._reply(replies.BYE)
        self._close("quit")

    def _transaction(self, keyword: str, args: list[str]) -> None:
        if keyword in _NO_ARGS:
            if args:
                self._error(replies.SYNTAX_ERROR)
            elif keyword == "STAT":
                self._reply(replies.stat(*self._totals()))
            elif keyword == "NOOP":
                self._reply(replies.NOOP)
            else:  # RSET
                self._deleted.clear()
                self._reply(replies.reset(*self._totals()))
        elif keyword in ("LIST", "UIDL"):
            self._listing(keyword, args)
        elif keyword in ("RETR", "DELE"):
            if len(args) != 1:
                self._error(replies.SYNTAX_ERROR)
                return
            number = self._message_number(args[0])
            if number is None:
                return
            if keyword == "DELE":
                self._deleted.add(number)
                self._reply(replies.deleted(number))
            else:
                self._emit_request(FetchMessage(number, self._messages[number - 1], "RETR", None))
        else:  # TOP
            self._top(args)

    def _top(self, args: list[str]) -> None:
        if len(args) != 2:
            self._error(replies.SYNTAX_ERROR)
            return
        number = self._message_number(args[0])
        if number is None:
            return
        if not args[1].isascii() or not args[1].isdigit():
            self._error(replies.BAD_LINE_COUNT)
            return
        message = self._messages[number - 1]
        self._emit_request(FetchMessage(number, message, "TOP", int(args[1])))

    def _listing(self, keyword: str, args: list[str]) -> None:
        line = replies.scan_line if keyword == "LIST" else replies.uidl_line
        if len(args) > 1:
            self._error(replies.SYNTAX_ERROR)
        elif args:
            number = self._message_number(args[0])
            if number is not None:
                self._reply(b"+OK " + line(number, self._field(keyword, number)))
        else:
            head = replies.LISTING_FOLLOWS if keyword == "LIST" else replies.UIDL_FOLLOWS
            body = b"".join(
                line(n, self._field(keyword, n))
                for n in range(1, len(self._messages) + 1)
                if n not in self._deleted
            )
            self._reply(head + body + replies.END)

    def _field(self, keyword: str, number: int) -> int | str:
        message = self._messages[number - 1]
        return message.octets if keyword == "LIST" else message.uidl

    def _message_number(self, arg: str) -> int | None:
        """The message number in ``arg`` if it names a live message; else reply -ERR, None."""
        if not arg.isascii() or not arg.isdigit() or len(arg) > 9:
            self._error(replies.BAD_MESSAGE_NUMBER)
            return None
        number = int(arg)
        if not 1 <= number <= len(self._messages):
            self._error(replies.NO_SUCH_MESSAGE)
            return None
        if number in self._deleted:
            self._error(replies.MESSAGE_DELETED)
            return None
        return number
