"""The SMTP server protocol as a sans-IO state machine (RFC 5321, h11-style).

Theory. The shell feeds received bytes with ``receive_data`` and pulls events
with ``next_event`` until it gets ``NEED_DATA``. Events are replies to send, audit
records, requests the shell must answer, or ``CloseConnection``. A request
(``CheckRecipient``, ``MessageComplete``) puts the machine in a waiting state;
until the shell answers (``recipient_checked``, ``message_stored`` or
``message_failed``) it reports ``PAUSED`` and reads no further input, so
pipelined commands stay buffered and replies keep their order. Hence no 250 for
a message can exist before the shell said it is stored.

States use the RFC's words:

    GREETING --EHLO/HELO--> READY --MAIL--> MAIL --RCPT ok--> RCPT --DATA--> DATA
    DATA --CRLF.CRLF--> STORING --stored/failed--> READY
    MAIL/RCPT --RCPT--> CHECKING_RECIPIENT --answer--> MAIL/RCPT
    READY/MAIL/RCPT --RSET, EHLO--> READY        any --QUIT, fatal error--> CLOSED

Syntax and sequence errors are the machine's own; every negative reply to a
command counts against an error budget, after which the session is closed.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Sequence
from typing import ClassVar

import msgspec

from eventmail.accounts import NAME_RULE
from eventmail.config import SmtpConfig
from eventmail.events import Recipient
from eventmail.smtp import replies
from eventmail.smtp.commands import CommandError, MailParser
from eventmail.smtp.data import DataReader, DataResult
from eventmail.smtp.replies import Reply

POSTMASTER = "postmaster"
_HTTP_METHODS = (b"GET ", b"POST ", b"HEAD ", b"CONNECT ")


class State(enum.Enum):
    GREETING = "greeting"  # connected, waiting for EHLO/HELO
    READY = "ready"  # no mail transaction
    MAIL = "mail"  # MAIL accepted, no recipient yet
    RCPT = "rcpt"  # at least one recipient accepted
    DATA = "data"  # reading message content
    CHECKING_RECIPIENT = "checking recipient"  # waiting for recipient_checked
    STORING = "storing"  # waiting for message_stored / message_failed
    CLOSED = "closed"


TRANSACTION_STATES = frozenset({State.MAIL, State.RCPT, State.CHECKING_RECIPIENT})


class _Sentinel:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


NEED_DATA = _Sentinel("NEED_DATA")
PAUSED = _Sentinel("PAUSED")


class Envelope(msgspec.Struct, frozen=True):
    helo: str
    protocol: str  # for Received: "SMTP", "ESMTP" or "UTF8SMTP"
    mail_from: str  # "" for the null sender
    mail_params: dict[str, str]
    recipients: tuple[Recipient, ...]


class SendReply(msgspec.Struct, frozen=True):
    reply: Reply


class CheckRecipient(msgspec.Struct, frozen=True):
    account: str
    address: str


class MessageComplete(msgspec.Struct, frozen=True):
    envelope: Envelope
    data: bytes  # dot-unstuffed content, CRLF line endings


class RecipientRejected(msgspec.Struct, frozen=True):
    """Audit: a recipient was refused by policy (unknown account, relay)."""

    address: str
    reply: Reply
    mail_from: str
    helo: str


class MessageRejected(msgspec.Struct, frozen=True):
    """Audit: message content was refused at the end of DATA."""

    reply: Reply
    mail_from: str
    accounts: tuple[str, ...]
    received: int
    helo: str


class CloseConnection(msgspec.Struct, frozen=True):
    pass


Event = (
    SendReply | CheckRecipient | MessageComplete | RecipientRejected | MessageRejected
) | CloseConnection


class ProtocolMisuse(RuntimeError):
    """The shell called the machine in a state where that call makes no sense."""


class SmtpProtocol:
    def __init__(self, config: SmtpConfig, *, hostname: str, domains: Sequence[str]) -> None:
        self.config = config
        self.hostname = hostname
        self.domains = frozenset(d.lower().rstrip(".") for d in domains)
        self.state = State.GREETING
        self._buf = b""
        self._out: deque[Event] = deque([SendReply(replies.greeting(hostname))])
        self._lines = 0
        self._errors = 0
        self._discarding = False  # dropping the rest of an over-long command line
        self._helo = ""
        self._esmtp = False
        self._data: DataReader | None = None
        self._parser = MailParser(max_size=config.max_message_size)
        self._reset_transaction()

    # --- the shell's side ------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        self._buf += data

    def next_event(self) -> Event | _Sentinel:
        while not self._out:
            if self.state is State.CLOSED:
                return CloseConnection()
            if self.state in (State.CHECKING_RECIPIENT, State.STORING):
                return PAUSED
            if not self._step():
                return NEED_DATA
        return self._out.popleft()

    def recipient_checked(self, exists: bool) -> None:
        self._expect(State.CHECKING_RECIPIENT)
        pending = self._pending
        assert pending is not None
        self._pending = None
        self.state = State.RCPT if self._recipients else State.MAIL
        if exists:
            self._accept_recipient(pending)
        else:
            self._reject_recipient(pending.address, replies.UNKNOWN_ACCOUNT)

    def message_stored(self, message_id: str) -> None:
        self._expect(State.STORING)
        self._finish_transaction(replies.message_accepted(message_id))

    def message_failed(self, reply: Reply) -> None:
        self._expect(State.STORING)
        self._finish_transaction(reply)

    @property
    def in_transaction(self) -> bool:
        return self.state in TRANSACTION_STATES

    # --- input --------------------------------------------------------------------

    def _step(self) -> bool:
        """Consume some input; False if more is needed."""
        if self.state is State.DATA:
            return self._step_data()
        lf = self._buf.find(b"\n")
        if lf < 0:
            if len(self._buf) >= self.config.max_command_line:
                self._discarding = True
                self._buf = b""
            return False
        line, self._buf = self._buf[: lf + 1], self._buf[lf + 1 :]
        if self._discarding or len(line) > self.config.max_command_line:
            self._discarding = False
            self._fail(replies.LINE_TOO_LONG)
        else:
            self._command_line(line)
        return True

    def _step_data(self) -> bool:
        assert self._data is not None
        data, self._buf = self._buf, b""
        result = self._data.feed(data)
        if result is None:
            return False
        self._data = None
        self._buf = result.rest
        self._end_of_data(result)
        return True

    def _command_line(self, line: bytes) -> None:
        self._lines += 1
        if self._lines == 1 and line.startswith(_HTTP_METHODS):
            self.state = State.CLOSED
            return
        if not line.endswith(b"\r\n") or b"\r" in line[:-2]:
            return self._fail(replies.BARE_CR_LF_IN_COMMAND)
        if b"\0" in line:
            return self._fail(replies.NUL_IN_COMMAND)
        try:
            text = line[:-2].decode("utf-8")
        except UnicodeDecodeError:
            return self._fail(replies.INVALID_UTF8)
        verb, _, argument = text.partition(" ")
        handler = self._handlers.get(verb.upper())
        if handler is None:
            return self._fail(replies.UNRECOGNISED)
        handler(self, argument.strip(" "))

    # --- commands -------------------------------------------------------------------

    def _ehlo(self, argument: str) -> None:
        self._hello(argument, esmtp=True)

    def _helo_command(self, argument: str) -> None:
        self._hello(argument, esmtp=False)

    def _hello(self, argument: str, *, esmtp: bool) -> None:
        if not argument:
            return self._fail(replies.NEED_ARGUMENT)
        self._reset_transaction()
        self._helo, self._esmtp = argument, esmtp
        self.state = State.READY
        if esmtp:
            reply = replies.ehlo(self.hostname, argument, self.config.max_message_size)
        else:
            reply = replies.helo(self.hostname, argument)
        self._send(reply)

    def _mail(self, argument: str) -> None:
        if self.state is State.GREETING:
            return self._fail(replies.HELLO_FIRST)
        if self.state is not State.READY:
            return self._fail(replies.NESTED_MAIL)
        try:
            sender, params = self._parser.mail(argument)
        except CommandError as exc:
            return self._fail(exc.reply)
        self._mail_from, self._mail_params = sender, params
        self.state = State.MAIL
        self._send(replies.SENDER_OK)

    def _rcpt(self, argument: str) -> None:
        if self.state is State.GREETING:
            return self._fail(replies.HELLO_FIRST)
        if self.state not in (State.MAIL, State.RCPT):
            return self._fail(replies.MAIL_FIRST)
        try:
            mailbox, params = self._parser.rcpt(argument, utf8="SMTPUTF8" in self._mail_params)
        except CommandError as exc:
            return self._fail(exc.reply)
        if mailbox.domain and mailbox.domain.lower().rstrip(".") not in self.domains:
            return self._reject_recipient(mailbox.address, replies.RELAY_DENIED)
        local = mailbox.local
        if local.startswith('"'):
            local = local[1:-1].replace("\\", "")
        account = local.lower()
        if not mailbox.domain and account != POSTMASTER:
            return self._fail(replies.BAD_RECIPIENT)
        recipient = Recipient(account=account, address=mailbox.address, params=params)
        if account in self._recipients:
            return self._send(replies.RECIPIENT_OK)  # the same mailbox twice: one delivery
        if len(self._recipients) >= self.config.max_recipients:
            return self._send(replies.TOO_MANY_RECIPIENTS)
        if account == POSTMASTER:
            return self._accept_recipient(recipient)
        if not NAME_RULE.fullmatch(account):
            return self._reject_recipient(mailbox.address, replies.UNKNOWN_ACCOUNT)
        self._pending = recipient
        self.state = State.CHECKING_RECIPIENT
        self._out.append(CheckRecipient(account=account, address=mailbox.address))

    def _data_command(self, argument: str) -> None:
        if argument:
            return self._fail(replies.NO_ARGUMENTS_ALLOWED)
        if self.state is State.GREETING:
            return self._fail(replies.HELLO_FIRST)
        if self.state is State.READY:
            return self._fail(replies.MAIL_FIRST)
        if self.state is State.MAIL:
            return self._fail(replies.NO_VALID_RECIPIENTS)  # RFC 5321 3.3, RFC 2920 3.1
        self.state = State.DATA
        self._data = DataReader(
            max_size=self.config.max_message_size, max_line=self.config.max_text_line
        )
        self._send(replies.START_DATA)

    def _rset(self, argument: str) -> None:
        if argument:
            return self._fail(replies.NO_ARGUMENTS_ALLOWED)
        self._reset_transaction()
        if self.state is not State.GREETING:
            self.state = State.READY
        self._send(replies.RESET_OK)

    def _noop(self, argument: str) -> None:
        self._send(replies.OK)

    def _quit(self, argument: str) -> None:
        self._send(replies.BYE)
        self.state = State.CLOSED

    def _vrfy(self, argument: str) -> None:
        if not argument:
            return self._fail(replies.NEED_ARGUMENT)
        self._send(replies.CANNOT_VRFY)

    def _help(self, argument: str) -> None:
        self._send(replies.HELP)

    def _not_implemented(self, argument: str) -> None:
        self._fail(replies.NOT_IMPLEMENTED)

    _handlers: ClassVar[dict[str, Callable[[SmtpProtocol, str], None]]] = {
        "EHLO": _ehlo,
        "HELO": _helo_command,
        "MAIL": _mail,
        "RCPT": _rcpt,
        "DATA": _data_command,
        "RSET": _rset,
        "NOOP": _noop,
        "QUIT": _quit,
        "VRFY": _vrfy,
        "HELP": _help,
        "EXPN": _not_implemented,
        "TURN": _not_implemented,
        "ETRN": _not_implemented,
        "BDAT": _not_implemented,
        "AUTH": _not_implemented,
        "STARTTLS": _not_implemented,
    }

    # --- transaction ---------------------------------------------------------------------

    def _reset_transaction(self) -> None:
        self._mail_from = ""
        self._mail_params: dict[str, str] = {}
        self._recipients: dict[str, Recipient] = {}
        self._pending: Recipient | None = None

    def _accept_recipient(self, recipient: Recipient) -> None:
        self._recipients[recipient.account] = recipient
        self.state = State.RCPT
        self._send(replies.RECIPIENT_OK)

    def _reject_recipient(self, address: str, reply: Reply) -> None:
        audit = RecipientRejected(address, reply, self._mail_from, self._helo)
        self._fail(reply)
        self._out.append(audit)  # after the reply, so the shell need not delay it

    def _end_of_data(self, result: DataResult) -> None:
        if result.refusal is not None:
            audit = MessageRejected(
                result.refusal,
                self._mail_from,
                tuple(self._recipients),
                result.received,
                self._helo,
            )
            self._finish_transaction(result.refusal)
            self._out.append(audit)
            return
        utf8 = "SMTPUTF8" in self._mail_params
        protocol = "UTF8SMTP" if utf8 else "ESMTP" if self._esmtp else "SMTP"
        envelope = Envelope(
            helo=self._helo,
            protocol=protocol,
            mail_from=self._mail_from,
            mail_params=self._mail_params,
            recipients=tuple(self._recipients.values()),
        )
        self.state = State.STORING
        self._out.append(MessageComplete(envelope, result.message))

    def _finish_transaction(self, reply: Reply) -> None:
        self._reset_transaction()
        self.state = State.READY
        self._send(reply)

    # --- replies ------------------------------------------------------------------------

    def _send(self, reply: Reply) -> None:
        self._out.append(SendReply(reply))

    def _fail(self, reply: Reply) -> None:
        """A negative reply to a command; it counts against the error budget."""
        self._send(reply)
        self._errors += 1
        if self._errors >= self.config.error_budget:
            self._send(replies.TOO_MANY_ERRORS)
            self.state = State.CLOSED

    def _expect(self, state: State) -> None:
        if self.state is not state:
            raise ProtocolMisuse(f"not waiting for this answer in state {self.state.name}")
