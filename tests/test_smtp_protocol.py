"""The SMTP sans-IO core: transcripts fed whole, byte by byte and line by line."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventmail.config import SmtpConfig
from eventmail.events import Recipient
from eventmail.smtp import replies
from eventmail.smtp.data import DataReader, DataResult
from eventmail.smtp.protocol import (
    NEED_DATA,
    PAUSED,
    CheckRecipient,
    CloseConnection,
    MessageComplete,
    MessageRejected,
    ProtocolMisuse,
    RecipientRejected,
    SendReply,
    SmtpProtocol,
    State,
)
from eventmail.smtp.replies import Reply

HOST = "mx.example.test"
ACCOUNTS = {"bob", "carol"} | {f"u{i}" for i in range(150)}
SIZE = 10_000
CLOSED = "CLOSED"

EHLO = b"EHLO client.example\r\n"
EHLO_OK = replies.ehlo(HOST, "client.example", SIZE)
MAIL = b"MAIL FROM:<ana@example.org>\r\n"
RCPT = b"RCPT TO:<bob@localhost>\r\n"
TRANSACTION = EHLO + MAIL + RCPT + b"DATA\r\nSubject: hi\r\n\r\nhello\r\n.\r\n"
TRANSACTION_OK = [EHLO_OK, replies.SENDER_OK, replies.RECIPIENT_OK, replies.START_DATA]


def config(**changes: object) -> SmtpConfig:
    base: dict[str, object] = {"max_message_size": SIZE}
    base.update(changes)
    return SmtpConfig(**base)  # type: ignore[arg-type]


class Driver:
    """Plays the shell: answers requests at once, records everything the core says."""

    def __init__(self, core: SmtpProtocol, accounts: set[str] = ACCOUNTS) -> None:
        self.core = core
        self.accounts = accounts
        self.events: list[object] = []
        self._ids = count(1)
        self.closed = False

    def pump(self) -> None:
        while not self.closed:
            event = self.core.next_event()
            if event is NEED_DATA:
                return
            self.events.append(event)
            if isinstance(event, CloseConnection):
                self.closed = True
            elif isinstance(event, CheckRecipient):
                self.core.recipient_checked(event.account in self.accounts)
            elif isinstance(event, MessageComplete):
                self.core.message_stored(f"ID{next(self._ids)}")

    def feed(self, chunks: list[bytes]) -> Driver:
        self.pump()
        for chunk in chunks:
            if self.closed:
                break
            self.core.receive_data(chunk)
            self.pump()
        return self

    def replies(self) -> list[Reply | str]:
        return [
            e.reply if isinstance(e, SendReply) else CLOSED
            for e in self.events
            if isinstance(e, SendReply | CloseConnection)
        ]

    def messages(self) -> list[MessageComplete]:
        return [e for e in self.events if isinstance(e, MessageComplete)]


def whole(data: bytes) -> list[bytes]:
    return [data]


def byte_by_byte(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def line_by_line(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


FEEDS = [whole, byte_by_byte, line_by_line]


def run(data: bytes, feed=whole, **changes: object) -> Driver:
    core = SmtpProtocol(config(**changes), hostname=HOST, domains=["localhost", "Example.NET"])
    return Driver(core).feed(feed(data))


R = replies
LONG = b"x" * 600

# (name, input, replies after the greeting, config changes)
TRANSCRIPTS: list[tuple[str, bytes, list[Reply | str], dict[str, object]]] = [
    ("helo then quit", b"HELO c\r\nQUIT\r\n", [R.helo(HOST, "c"), R.BYE, CLOSED], {}),
    ("ehlo", EHLO, [EHLO_OK], {}),
    ("verbs are case-insensitive", b"ehlo client.example\r\nnoop\r\n", [EHLO_OK, R.OK], {}),
    ("ehlo needs a domain", b"EHLO\r\n", [R.NEED_ARGUMENT], {}),
    ("mail before ehlo", MAIL, [R.HELLO_FIRST], {}),
    ("rcpt before mail", EHLO + RCPT, [EHLO_OK, R.MAIL_FIRST], {}),
    ("data before mail", EHLO + b"DATA\r\n", [EHLO_OK, R.MAIL_FIRST], {}),
    ("data before ehlo", b"DATA\r\n", [R.HELLO_FIRST], {}),
    (
        "a whole transaction",
        TRANSACTION + b"QUIT\r\n",
        [*TRANSACTION_OK, R.message_accepted("ID1"), R.BYE, CLOSED],
        {},
    ),
    (
        "two transactions in one session",
        TRANSACTION + MAIL + RCPT + b"DATA\r\n.\r\n",
        [
            *TRANSACTION_OK,
            R.message_accepted("ID1"),
            R.SENDER_OK,
            R.RECIPIENT_OK,
            R.START_DATA,
            R.message_accepted("ID2"),
        ],
        {},
    ),
    ("nested mail", EHLO + MAIL + MAIL, [EHLO_OK, R.SENDER_OK, R.NESTED_MAIL], {}),
    (
        "rset ends the transaction",
        EHLO + MAIL + b"RSET\r\n" + MAIL,
        [EHLO_OK, R.SENDER_OK, R.RESET_OK, R.SENDER_OK],
        {},
    ),
    ("rset takes no argument", EHLO + b"RSET x\r\n", [EHLO_OK, R.NO_ARGUMENTS_ALLOWED], {}),
    (
        "ehlo resets the transaction",
        EHLO + MAIL + EHLO + RCPT,
        [EHLO_OK, R.SENDER_OK, EHLO_OK, R.MAIL_FIRST],
        {},
    ),
    (
        "noop vrfy help expn unknown",
        b"NOOP\r\nVRFY bob\r\nVRFY\r\nHELP\r\nEXPN list\r\nFROB\r\n",
        [R.OK, R.CANNOT_VRFY, R.NEED_ARGUMENT, R.HELP, R.NOT_IMPLEMENTED, R.UNRECOGNISED],
        {},
    ),
    (
        "unknown account and other domain",
        EHLO + MAIL + b"RCPT TO:<nobody@localhost>\r\nRCPT TO:<bob@elsewhere.example>\r\n",
        [EHLO_OK, R.SENDER_OK, R.UNKNOWN_ACCOUNT, R.RELAY_DENIED],
        {},
    ),
    (
        "an account name the rules refuse is unknown",
        EHLO + MAIL + b"RCPT TO:<Bad+Name@localhost>\r\n",
        [EHLO_OK, R.SENDER_OK, R.UNKNOWN_ACCOUNT],
        {},
    ),
    (
        "postmaster is always accepted, with or without a domain",
        EHLO + MAIL + b"RCPT TO:<postmaster>\r\nRCPT TO:<PostMaster@LOCALHOST>\r\n",
        [EHLO_OK, R.SENDER_OK, R.RECIPIENT_OK, R.RECIPIENT_OK],
        {},
    ),
    (
        "postmaster at another domain is relaying",
        EHLO + MAIL + b"RCPT TO:<postmaster@elsewhere.example>\r\n",
        [EHLO_OK, R.SENDER_OK, R.RELAY_DENIED],
        {},
    ),
    (
        "domains compare case-insensitively",
        EHLO + MAIL + b"RCPT TO:<Bob@example.net>\r\nRCPT TO:<carol@LocalHost>\r\n",
        [EHLO_OK, R.SENDER_OK, R.RECIPIENT_OK, R.RECIPIENT_OK],
        {},
    ),
    (
        "a bare local part other than postmaster",
        EHLO + MAIL + b"RCPT TO:<bob>\r\n",
        [EHLO_OK, R.SENDER_OK, R.BAD_RECIPIENT],
        {},
    ),
    (
        "data without a valid recipient",
        EHLO + MAIL + b"RCPT TO:<nobody@localhost>\r\nDATA\r\n",
        [EHLO_OK, R.SENDER_OK, R.UNKNOWN_ACCOUNT, R.NO_VALID_RECIPIENTS],
        {},
    ),
    (
        "data takes no argument",
        EHLO + MAIL + RCPT + b"DATA x\r\n",
        [EHLO_OK, R.SENDER_OK, R.RECIPIENT_OK, R.NO_ARGUMENTS_ALLOWED],
        {},
    ),
    ("null sender", EHLO + b"MAIL FROM:<>\r\n", [EHLO_OK, R.SENDER_OK], {}),
    ("space after the colon", EHLO + b"MAIL FROM: <a@b.example>\r\n", [EHLO_OK, R.SENDER_OK], {}),
    ("no angle brackets", EHLO + b"MAIL FROM:a@b.example\r\n", [EHLO_OK, R.BAD_MAIL_SYNTAX], {}),
    ("MAIL without FROM", EHLO + b"MAIL <a@b.example>\r\n", [EHLO_OK, R.BAD_MAIL_SYNTAX], {}),
    ("bad sender", EHLO + b"MAIL FROM:<a b@c.example>\r\n", [EHLO_OK, R.BAD_SENDER], {}),
    ("sender without domain", EHLO + b"MAIL FROM:<ana>\r\n", [EHLO_OK, R.BAD_SENDER], {}),
    (
        "RCPT syntax errors",
        EHLO + MAIL + b"RCPT TO:bob@localhost\r\nRCPT TO:<@localhost>\r\nRCPT <bob@localhost>\r\n",
        [EHLO_OK, R.SENDER_OK, R.BAD_RCPT_SYNTAX, R.BAD_RECIPIENT, R.BAD_RCPT_SYNTAX],
        {},
    ),
    (
        "a source route is ignored",
        EHLO + MAIL + b"RCPT TO:<@relay.example,@b.example:bob@localhost>\r\n",
        [EHLO_OK, R.SENDER_OK, R.RECIPIENT_OK],
        {},
    ),
    (
        "quoted local part",
        EHLO + MAIL + b'RCPT TO:<"bob"@localhost>\r\n',
        [EHLO_OK, R.SENDER_OK, R.RECIPIENT_OK],
        {},
    ),
    (
        "MAIL parameters",
        EHLO
        + b"MAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ314159\r\n",
        [EHLO_OK, R.SENDER_OK],
        {},
    ),
    (
        "declared SIZE over the limit",
        EHLO + f"MAIL FROM:<a@b.example> SIZE={SIZE + 1}\r\n".encode(),
        [EHLO_OK, R.SIZE_EXCEEDED],
        {},
    ),
    (
        "bad MAIL parameter values",
        EHLO
        + b"MAIL FROM:<a@b.example> SIZE=ten\r\n"
        + b"MAIL FROM:<a@b.example> BODY=BINARYMIME\r\n"
        + b"MAIL FROM:<a@b.example> SMTPUTF8=yes\r\n"
        + b"MAIL FROM:<a@b.example> RET=ALL\r\n"
        + b"MAIL FROM:<a@b.example> SIZE=1 SIZE=2\r\n",
        [
            EHLO_OK,
            R.BAD_PARAMETER,
            R.BAD_PARAMETER,
            R.BAD_PARAMETER,
            R.BAD_PARAMETER,
            R.DUPLICATE_PARAMETER,
        ],
        {},
    ),
    (
        "unknown MAIL parameter",
        EHLO + b"MAIL FROM:<a@b.example> AUTH=<>\r\n",
        [EHLO_OK, R.UNKNOWN_PARAMETER],
        {},
    ),
    (
        "RCPT parameters",
        EHLO
        + MAIL
        + b"RCPT TO:<bob@localhost> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@x\r\n"
        + b"RCPT TO:<carol@localhost> NOTIFY=SOMETIMES\r\n"
        + b"RCPT TO:<carol@localhost> XFORWARD=1\r\n",
        [EHLO_OK, R.SENDER_OK, R.RECIPIENT_OK, R.BAD_PARAMETER, R.UNKNOWN_PARAMETER],
        {},
    ),
    (
        "non-ASCII addresses need SMTPUTF8",
        EHLO
        + "MAIL FROM:<jös@b.example>\r\n".encode()
        + MAIL
        + "RCPT TO:<jös@localhost>\r\n".encode(),
        [EHLO_OK, R.NON_ASCII_WITHOUT_SMTPUTF8, R.SENDER_OK, R.NON_ASCII_WITHOUT_SMTPUTF8],
        {},
    ),
    (
        "non-ASCII addresses with SMTPUTF8",
        EHLO + "MAIL FROM:<jös@b.example> SMTPUTF8\r\nRCPT TO:<jös@localhost>\r\n".encode(),
        [EHLO_OK, R.SENDER_OK, R.UNKNOWN_ACCOUNT],
        {},
    ),
    (
        "the same recipient twice",
        EHLO + MAIL + RCPT + RCPT + b"RCPT TO:<BOB@localhost>\r\n",
        [EHLO_OK, R.SENDER_OK, R.RECIPIENT_OK, R.RECIPIENT_OK, R.RECIPIENT_OK],
        {},
    ),
    (
        "too many recipients",
        EHLO + MAIL + RCPT + b"RCPT TO:<carol@localhost>\r\nRCPT TO:<u1@localhost>\r\n" + RCPT,
        [
            EHLO_OK,
            R.SENDER_OK,
            R.RECIPIENT_OK,
            R.RECIPIENT_OK,
            R.TOO_MANY_RECIPIENTS,
            R.RECIPIENT_OK,
        ],
        {"max_recipients": 2},
    ),
    (
        "command line too long, connection still usable",
        b"NOOP " + LONG + b"\r\nNOOP\r\n",
        [R.LINE_TOO_LONG, R.OK],
        {},
    ),
    ("command line of exactly 512 octets", b"NOOP " + b"y" * 505 + b"\r\n", [R.OK], {}),
    ("command line of 513 octets", b"NOOP " + b"y" * 506 + b"\r\n", [R.LINE_TOO_LONG], {}),
    (
        "bare LF or CR in a command",
        b"NOOP\nNO\rOP\r\nNOOP\r\n",
        [R.BARE_CR_LF_IN_COMMAND, R.BARE_CR_LF_IN_COMMAND, R.OK],
        {},
    ),
    ("NUL in a command", b"NO\0OP\r\n", [R.NUL_IN_COMMAND], {}),
    ("invalid UTF-8", b"NOOP \xff\r\n", [R.INVALID_UTF8], {}),
    (
        "error budget",
        b"A\r\nB\r\nC\r\nNOOP\r\n",
        [R.UNRECOGNISED, R.UNRECOGNISED, R.UNRECOGNISED, R.TOO_MANY_ERRORS, CLOSED],
        {"error_budget": 3},
    ),
    ("HTTP GET", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", [CLOSED], {}),
    ("HTTP POST", b"POST /x HTTP/1.1\r\n", [CLOSED], {}),
    ("HTTP HEAD", b"HEAD / HTTP/1.0\r\n", [CLOSED], {}),
    ("HTTP CONNECT", b"CONNECT a:25 HTTP/1.1\r\n", [CLOSED], {}),
    ("GET after the first line", b"NOOP\r\nGET / HTTP/1.1\r\n", [R.OK, R.UNRECOGNISED], {}),
    ("input after QUIT is ignored", b"QUIT\r\nNOOP\r\n", [R.BYE, CLOSED], {}),
    (
        "bare LF in the data",
        EHLO + MAIL + RCPT + b"DATA\r\nhello\nworld\r\n.\r\nNOOP\r\n",
        [*TRANSACTION_OK, R.BARE_CR_LF_IN_DATA, R.OK],
        {},
    ),
    (
        "bare CR in the data",
        EHLO + MAIL + RCPT + b"DATA\r\nhello\rworld\r\n.\r\nNOOP\r\n",
        [*TRANSACTION_OK, R.BARE_CR_LF_IN_DATA, R.OK],
        {},
    ),
    (
        "message over the size limit",
        b"HELO c\r\n"
        + MAIL
        + RCPT
        + b"DATA\r\n"
        + b"z" * 98
        + b"\r\n"
        + b"z" * 98
        + b"\r\n.\r\nNOOP\r\n",
        [R.helo(HOST, "c"), *TRANSACTION_OK[1:], R.SIZE_EXCEEDED, R.OK],
        {"max_message_size": 150},
    ),
    (
        "text line of 1001 octets",
        EHLO + MAIL + RCPT + b"DATA\r\n" + b"t" * 999 + b"\r\n.\r\nNOOP\r\n",
        [*TRANSACTION_OK, R.TEXT_LINE_TOO_LONG, R.OK],
        {},
    ),
    (
        "text line of 1000 octets",
        EHLO + MAIL + RCPT + b"DATA\r\n" + b"t" * 998 + b"\r\n.\r\n",
        [*TRANSACTION_OK, R.message_accepted("ID1")],
        {},
    ),
    (
        "a very long text line is drained, not buffered",
        EHLO + MAIL + RCPT + b"DATA\r\n" + b"t" * 50_000 + b"\r\n.\r\nNOOP\r\n",
        [*TRANSACTION_OK, R.TEXT_LINE_TOO_LONG, R.OK],
        {},
    ),
]


@pytest.mark.parametrize("feed", FEEDS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    ("data", "expected", "changes"),
    [pytest.param(d, e, c, id=name) for name, d, e, c in TRANSCRIPTS],
)
def test_transcript(data: bytes, expected: list[Reply | str], changes: dict, feed) -> None:
    driver = run(data, feed, **changes)
    assert driver.replies() == [replies.greeting(HOST), *expected]


def test_hundred_recipients_are_accepted() -> None:
    rcpts = b"".join(f"RCPT TO:<u{i}@localhost>\r\n".encode() for i in range(100))
    driver = run(EHLO + MAIL + rcpts + b"DATA\r\nx\r\n.\r\n")
    assert driver.replies().count(replies.RECIPIENT_OK) == 100
    (message,) = driver.messages()
    assert len(message.envelope.recipients) == 100


@pytest.mark.parametrize("feed", FEEDS, ids=lambda f: f.__name__)
def test_message_and_envelope(feed) -> None:
    data = (
        EHLO
        + b"MAIL FROM:<ana@example.org> SIZE=40 BODY=8BITMIME RET=FULL ENVID=e1\r\n"
        + b"RCPT TO:<Bob@localhost> NOTIFY=NEVER\r\n"
        + b"RCPT TO:<bob@LOCALHOST>\r\nRCPT TO:<postmaster>\r\n"
        + b"DATA\r\nSubject: dots\r\n\r\n..leading dot\r\n...two\r\n.\r\n"
    )
    (message,) = run(data, feed).messages()
    assert message.data == b"Subject: dots\r\n\r\n.leading dot\r\n..two\r\n"
    envelope = message.envelope
    assert envelope.mail_from == "ana@example.org"
    assert envelope.mail_params == {"SIZE": "40", "BODY": "8BITMIME", "RET": "FULL", "ENVID": "e1"}
    assert envelope.recipients == (
        Recipient(account="bob", address="Bob@localhost", params={"NOTIFY": "NEVER"}),
        Recipient(account="postmaster", address="postmaster", params={}),
    )
    assert (envelope.helo, envelope.protocol) == ("client.example", "ESMTP")


def test_protocol_names_for_received() -> None:
    body = MAIL + RCPT + b"DATA\r\n.\r\n"
    assert run(b"HELO c\r\n" + body).messages()[0].envelope.protocol == "SMTP"
    utf8 = EHLO + b"MAIL FROM:<a@b.example> SMTPUTF8\r\n" + RCPT + b"DATA\r\n.\r\n"
    assert run(utf8).messages()[0].envelope.protocol == "UTF8SMTP"


def test_empty_message() -> None:
    (message,) = run(EHLO + MAIL + RCPT + b"DATA\r\n.\r\n").messages()
    assert message.data == b""


def test_no_reply_to_a_message_before_it_is_stored() -> None:
    core = SmtpProtocol(config(), hostname=HOST, domains=["localhost"])
    core.receive_data(TRANSACTION + b"NOOP\r\nQUIT\r\n")
    seen: list[object] = []
    while True:
        event = core.next_event()
        if isinstance(event, CheckRecipient):
            core.recipient_checked(True)
        elif isinstance(event, MessageComplete):
            break
        else:
            seen.append(event)
    assert seen[-1] == SendReply(replies.START_DATA)
    assert core.state is State.STORING
    # Waiting: the pipelined NOOP and QUIT stay buffered, nothing is said.
    assert [core.next_event() for _ in range(3)] == [PAUSED] * 3
    core.message_stored("Q1")
    assert core.next_event() == SendReply(replies.message_accepted("Q1"))
    assert core.next_event() == SendReply(replies.OK)
    assert core.next_event() == SendReply(replies.BYE)
    assert isinstance(core.next_event(), CloseConnection)


def test_a_failed_store_gets_its_reply_and_the_session_goes_on() -> None:
    core = SmtpProtocol(config(), hostname=HOST, domains=["localhost"])
    core.receive_data(TRANSACTION + MAIL)
    events = []
    while (event := core.next_event()) is not NEED_DATA:
        if isinstance(event, CheckRecipient):
            core.recipient_checked(True)
        elif isinstance(event, MessageComplete):
            core.message_failed(replies.LOG_WRITE_FAILED)
        else:
            events.append(event)
    assert events[-2:] == [SendReply(replies.LOG_WRITE_FAILED), SendReply(replies.SENDER_OK)]


def test_answers_out_of_turn_are_refused() -> None:
    core = SmtpProtocol(config(), hostname=HOST, domains=["localhost"])
    with pytest.raises(ProtocolMisuse):
        core.message_stored("X")
    with pytest.raises(ProtocolMisuse):
        core.recipient_checked(True)


def test_refusals_are_reported_for_audit_after_their_reply() -> None:
    data = (
        EHLO
        + MAIL
        + b"RCPT TO:<nobody@localhost>\r\nRCPT TO:<x@elsewhere.example>\r\n"
        + RCPT
        + b"DATA\r\nbare\nlf\r\n.\r\n"
    )
    events = run(data).events
    refused = [e for e in events if isinstance(e, RecipientRejected)]
    assert [(r.address, r.reply) for r in refused] == [
        ("nobody@localhost", replies.UNKNOWN_ACCOUNT),
        ("x@elsewhere.example", replies.RELAY_DENIED),
    ]
    first = events.index(refused[0])
    assert events[first - 1] == SendReply(replies.UNKNOWN_ACCOUNT)
    (rejected,) = [e for e in events if isinstance(e, MessageRejected)]
    assert rejected == MessageRejected(
        replies.BARE_CR_LF_IN_DATA,
        "ana@example.org",
        ("bob",),
        len(b"bare\nlf\r\n"),
        "client.example",
    )
    assert events[events.index(rejected) - 1] == SendReply(replies.BARE_CR_LF_IN_DATA)


def test_reply_encoding() -> None:
    assert replies.OK.encode() == b"250 2.0.0 OK\r\n"
    assert EHLO_OK.encode().splitlines()[:2] == [
        f"250-{HOST} greets client.example".encode(),
        b"250-PIPELINING",
    ]
    assert EHLO_OK.encode().endswith(b"\r\n250 SMTPUTF8\r\n")
    assert (
        replies.LOG_WRITE_FAILED.text == "451 4.3.0 Could not record the message, try again later"
    )


# --- the DATA reader, against a reference model ---------------------------------------

lines_strategy = st.lists(
    st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    max_size=20,
)


def chunked(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    start = 0
    for point in [*points, len(data)]:
        yield data[start:point]
        start = point


def read_all(reader: DataReader, data: bytes, cuts: list[int]) -> DataResult | None:
    """Feed chunks until the reader has a result; unfed input joins its ``rest``."""
    chunks = list(chunked(data, cuts))
    for i, chunk in enumerate(chunks):
        result = reader.feed(chunk)
        if result is not None:
            unfed = b"".join(chunks[i + 1 :])
            return msgspec.structs.replace(result, rest=result.rest + unfed)
    return None


def stuff(message_lines: list[bytes]) -> bytes:
    return b"".join(
        (b"." + line if line.startswith(b".") else line) + b"\r\n" for line in message_lines
    )


@given(lines_strategy, st.lists(st.integers(min_value=0), max_size=8), st.binary(max_size=20))
def test_stuff_then_unstuff_is_identity(lines: list[bytes], cuts: list[int], rest: bytes) -> None:
    message = b"".join(line + b"\r\n" for line in lines)
    reader = DataReader(max_size=10**6, max_line=1000)
    result = read_all(reader, stuff(lines) + b".\r\n" + rest, cuts)
    assert result is not None
    assert result.refusal is None
    assert result.message == message
    assert result.rest == rest


def reference(stream: bytes) -> tuple[bytes, bool, bytes]:
    """(content, has bare CR/LF, rest) for a DATA stream: the model the reader must match."""
    end = (b"\r\n" + stream).find(b"\r\n.\r\n")
    content, rest = stream[:end], stream[end + 3 :]
    crlf = content.count(b"\r\n")
    bare = content.count(b"\r") != crlf or content.count(b"\n") != crlf
    return content, bare, rest


@settings(max_examples=300)
@given(
    st.lists(st.sampled_from([b"\r", b"\n", b".", b"\0", b"a", b"\r\n", b"MAIL"]), max_size=30),
    st.lists(st.integers(min_value=0), max_size=8),
)
def test_any_bare_cr_or_lf_is_refused(pieces: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(pieces) + b"\r\n.\r\nNEXT"
    content, bare, rest = reference(stream)
    result = read_all(DataReader(max_size=10**6, max_line=1000), stream, cuts)
    assert result is not None
    assert result.rest == rest
    assert result.received == len(content)
    if bare:
        assert result.refusal == replies.BARE_CR_LF_IN_DATA
        assert result.message == b""
    else:
        assert result.refusal is None
        assert result.message == (b"\n" + content).replace(b"\n.", b"\n")[1:]


@given(st.integers(min_value=1, max_value=3000), st.lists(st.integers(min_value=0), max_size=6))
def test_long_lines_are_refused_with_bounded_buffering(length: int, cuts: list[int]) -> None:
    reader = DataReader(max_size=10**6, max_line=1000)
    stream = b"L" * length + b"\r\n.\r\n"
    result = None
    for chunk in chunked(stream, cuts):
        result = reader.feed(chunk) or result
        assert len(reader._partial) <= 1000
    assert result is not None
    assert result.refusal == (replies.TEXT_LINE_TOO_LONG if length + 2 > 1000 else None)
    assert result.received == length + 2
    assert result.rest == b""


# --- the Received: header (pure) -----------------------------------------------------------


def test_received_header_for_ipv6_and_odd_helo() -> None:
    from datetime import UTC, datetime

    from eventmail.netio import format_peer
    from eventmail.smtp.received import received_header

    peer = format_peer(("::1", 2525, 0, 0))
    assert peer == "[::1]:2525"
    header = received_header(
        helo="bad (helo); name",
        peer=peer,
        hostname=HOST,
        protocol="UTF8SMTP",
        message_id="ABC",
        recipient="jös@localhost",
        date=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    assert (
        header
        == (
            "Received: from bad__helo___name ([IPv6:::1])\r\n"
            f"\tby {HOST} (eventmail) with UTF8SMTP id ABC\r\n"
            "\tfor <jös@localhost>; Fri, 02 Jan 2026 03:04:05 +0000\r\n"
        ).encode()
    )
