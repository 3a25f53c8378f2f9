"""The POP3 core without I/O: transcripts fed whole, line by line and byte by byte."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventmail.pop3 import replies
from eventmail.pop3.backend import MailboxMessage
from eventmail.pop3.framing import (
    TOO_LONG,
    LineBuffer,
    as_lines,
    stuff,
    stuff_lines,
    top_lines,
    unstuff,
)
from eventmail.pop3.protocol import (
    NEED_DATA,
    Authenticate,
    Close,
    CommitDeletions,
    FetchMessage,
    OpenMailbox,
    Pop3Connection,
    ProtocolMisuse,
    SendReply,
    State,
)

HOST = "mail.test"
GREETING = replies.greeting(HOST)
CONTENT = {
    10: b"Subject: one\r\n\r\nHello\r\n.dot line\r\n..two dots\r\n",
    11: b"Subject: two\r\nX-Long: yes\r\n\r\nl1\r\nl2\r\nl3\r\n",
    12: b"Subject: three, no body\r\n",
}
MESSAGES = [
    MailboxMessage(seq=seq, octets=len(content), uidl=f"{seq}.uid")
    for seq, content in CONTENT.items()
]
TOTAL = sum(m.octets for m in MESSAGES)
LOGIN = b"USER jjordan\r\nPASS s3cret pass\r\n"
LOGGED_IN = GREETING + replies.USER_ACCEPTED + replies.logged_in(3, TOTAL)


class Shell:
    """A scripted shell: answers the core's requests like a backend would."""

    def __init__(self, *, commit_ok: bool = True, plaintext: bool = True, budget: int = 10):
        self.conn = Pop3Connection(
            hostname=HOST, max_line=64, error_budget=budget, plaintext_allowed=plaintext
        )
        self.commit_ok = commit_ok
        self.out = bytearray()
        self.requests: list[object] = []
        self.closed: Close | None = None

    def pump(self) -> None:
        while self.closed is None:
            event = self.conn.next_event()
            if event is NEED_DATA:
                return
            self.requests.append(event)
            match event:
                case SendReply(data=data):
                    self.out += data
                case Close():
                    self.closed = event
                case Authenticate(user="jjordan", password="s3cret pass"):
                    self.conn.authenticated("jjordan")
                case Authenticate(user="broken"):
                    self.conn.authenticated("broken")
                case Authenticate(user="busy"):
                    self.conn.mailbox_in_use()
                case Authenticate():
                    self.conn.authentication_failed()
                case OpenMailbox(account="broken"):
                    self.conn.mailbox_unavailable()
                case OpenMailbox():
                    self.conn.mailbox_opened(MESSAGES)
                case FetchMessage(message=message):
                    self.conn.message_fetched(CONTENT[message.seq])
                case CommitDeletions():
                    if self.commit_ok:
                        self.conn.deletions_committed()
                    else:
                        self.conn.deletions_failed()

    def feed(self, data: bytes) -> None:
        self.conn.receive_data(data)
        self.pump()


def run_whole(data: bytes, **kwargs: object) -> Shell:
    shell = Shell(**kwargs)  # type: ignore[arg-type]
    shell.pump()
    if data:
        shell.feed(data)
    return shell


def run_bytewise(data: bytes, **kwargs: object) -> Shell:
    shell = Shell(**kwargs)  # type: ignore[arg-type]
    shell.pump()
    for i in range(len(data)):
        if shell.closed:
            break
        shell.feed(data[i : i + 1])
    return shell


def run_linewise(data: bytes, **kwargs: object) -> Shell:
    shell = Shell(**kwargs)  # type: ignore[arg-type]
    shell.pump()
    for line in data.splitlines(keepends=True):
        if shell.closed:
            break
        shell.feed(line)
    return shell


RUNNERS = [run_whole, run_linewise, run_bytewise]

# (name, client bytes, expected server bytes, closed?)
TRANSCRIPTS: list[tuple[str, bytes, bytes, bool]] = [
    ("greeting only", b"", GREETING, False),
    ("quit before login", b"QUIT\r\n", GREETING + replies.BYE, True),
    (
        "lowercase commands",
        b"user jjordan\r\npass s3cret pass\r\nstat\r\n",
        LOGGED_IN + replies.stat(3, TOTAL),
        False,
    ),
    (
        "bare LF tolerated",
        b"USER jjordan\nPASS s3cret pass\nNOOP\n",
        LOGGED_IN + replies.NOOP,
        False,
    ),
    ("capa before login", b"CAPA\r\n", GREETING + replies.CAPABILITIES, False),
    (
        "wrong password",
        b"USER jjordan\r\nPASS nope\r\n",
        GREETING + replies.USER_ACCEPTED + replies.AUTH_FAILED,
        False,
    ),
    (
        "unknown user same reply",
        b"USER nobody\r\nPASS s3cret pass\r\n",
        GREETING + replies.USER_ACCEPTED + replies.AUTH_FAILED,
        False,
    ),
    (
        "retry after failure",
        b"USER jjordan\r\nPASS nope\r\n" + LOGIN,
        GREETING
        + replies.USER_ACCEPTED
        + replies.AUTH_FAILED
        + replies.USER_ACCEPTED
        + replies.logged_in(3, TOTAL),
        False,
    ),
    ("PASS needs USER", b"PASS x\r\n", GREETING + replies.PASS_WITHOUT_USER, False),
    (
        "PASS after failure needs USER again",
        b"USER a\r\nPASS b\r\nPASS c\r\n",
        GREETING + replies.USER_ACCEPTED + replies.AUTH_FAILED + replies.PASS_WITHOUT_USER,
        False,
    ),
    ("USER without name", b"USER\r\n", GREETING + replies.USER_MISSING, False),
    (
        "PASS empty",
        b"USER a\r\nPASS \r\n",
        GREETING + replies.USER_ACCEPTED + replies.PASS_MISSING,
        False,
    ),
    (
        "in use",
        b"USER busy\r\nPASS x\r\n",
        GREETING + replies.USER_ACCEPTED + replies.IN_USE,
        False,
    ),
    (
        "mailbox unavailable",
        b"USER broken\r\nPASS x\r\n",
        GREETING + replies.USER_ACCEPTED + replies.MAILBOX_UNAVAILABLE,
        False,
    ),
    (
        "APOP refused",
        b"APOP jjordan 0123456789abcdef\r\n",
        GREETING + replies.APOP_UNSUPPORTED,
        False,
    ),
    (
        "transaction command before login",
        b"STAT\r\nRETR 1\r\n",
        GREETING + replies.WRONG_STATE + replies.WRONG_STATE,
        False,
    ),
    ("unknown command", b"XYZZY\r\n", GREETING + replies.UNKNOWN_COMMAND, False),
    ("not utf-8", b"USER \xff\xfe\r\n", GREETING + replies.NOT_UTF8, False),
    (
        "stat list uidl",
        LOGIN + b"STAT\r\nLIST\r\nLIST 2\r\nUIDL\r\nUIDL 3\r\n",
        LOGGED_IN
        + replies.stat(3, TOTAL)
        + replies.LISTING_FOLLOWS
        + b"".join(replies.scan_line(n, m.octets) for n, m in enumerate(MESSAGES, 1))
        + replies.END
        + replies.scan(2, MESSAGES[1].octets)
        + replies.UIDL_FOLLOWS
        + b"1 10.uid\r\n2 11.uid\r\n3 12.uid\r\n.\r\n"
        + replies.uidl(3, "12.uid"),
        False,
    ),
    (
        "retr byte-stuffs",
        LOGIN + b"RETR 1\r\n",
        LOGGED_IN
        + replies.retr(MESSAGES[0].octets)
        + b"Subject: one\r\n\r\nHello\r\n..dot line\r\n...two dots\r\n.\r\n",
        False,
    ),
    (
        "retr without final CRLF in store",
        LOGIN + b"RETR 3\r\n",
        LOGGED_IN + replies.retr(MESSAGES[2].octets) + b"Subject: three, no body\r\n.\r\n",
        False,
    ),
    (
        "top 2 lines",
        LOGIN + b"TOP 2 2\r\n",
        LOGGED_IN + replies.TOP_FOLLOWS + b"Subject: two\r\nX-Long: yes\r\n\r\nl1\r\nl2\r\n.\r\n",
        False,
    ),
    (
        "top 0 lines",
        LOGIN + b"top 1 0\r\n",
        LOGGED_IN + replies.TOP_FOLLOWS + b"Subject: one\r\n\r\n.\r\n",
        False,
    ),
    (
        "top more lines than body",
        LOGIN + b"TOP 2 99\r\n",
        LOGGED_IN + replies.TOP_FOLLOWS + CONTENT[11] + b".\r\n",
        False,
    ),
    (
        "top of headers-only message",
        LOGIN + b"TOP 3 5\r\n",
        LOGGED_IN + replies.TOP_FOLLOWS + CONTENT[12] + b".\r\n",
        False,
    ),
    (
        "bad arguments",
        LOGIN + b"RETR\r\nRETR x\r\nRETR 0\r\nRETR 4\r\nRETR -1\r\nLIST 1 2\r\n"
        b"TOP 1\r\nTOP 1 x\r\nTOP 1 -1\r\n",
        LOGGED_IN
        + replies.SYNTAX_ERROR
        + replies.BAD_MESSAGE_NUMBER
        + replies.NO_SUCH_MESSAGE
        + replies.NO_SUCH_MESSAGE
        + replies.BAD_MESSAGE_NUMBER
        + replies.SYNTAX_ERROR
        + replies.SYNTAX_ERROR
        + replies.BAD_LINE_COUNT
        + replies.BAD_LINE_COUNT,
        False,
    ),
    (
        "more bad arguments",
        LOGIN + b"STAT 1\r\nDELE 99999999999\r\nUIDL a\r\nNOOP x\r\n",
        LOGGED_IN
        + replies.SYNTAX_ERROR
        + replies.BAD_MESSAGE_NUMBER
        + replies.BAD_MESSAGE_NUMBER
        + replies.SYNTAX_ERROR,
        False,
    ),
    (
        "USER in transaction",
        LOGIN + b"USER x\r\nPASS y\r\n",
        LOGGED_IN + replies.WRONG_STATE + replies.WRONG_STATE,
        False,
    ),
    (
        "dele marks, hides and refuses",
        LOGIN + b"DELE 1\r\nDELE 1\r\nRETR 1\r\nLIST 1\r\nSTAT\r\nLIST\r\nUIDL\r\n",
        LOGGED_IN
        + replies.deleted(1)
        + replies.MESSAGE_DELETED
        + replies.MESSAGE_DELETED
        + replies.MESSAGE_DELETED
        + replies.stat(2, TOTAL - MESSAGES[0].octets)
        + replies.LISTING_FOLLOWS
        + replies.scan_line(2, MESSAGES[1].octets)
        + replies.scan_line(3, MESSAGES[2].octets)
        + replies.END
        + replies.UIDL_FOLLOWS
        + b"2 11.uid\r\n3 12.uid\r\n.\r\n",
        False,
    ),
    (
        "rset unmarks",
        LOGIN + b"DELE 2\r\nRSET\r\nSTAT\r\nQUIT\r\n",
        LOGGED_IN
        + replies.deleted(2)
        + replies.reset(3, TOTAL)
        + replies.stat(3, TOTAL)
        + replies.BYE,
        True,
    ),
    (
        "quit with deletions",
        LOGIN + b"DELE 1\r\nDELE 3\r\nQUIT\r\n",
        LOGGED_IN + replies.deleted(1) + replies.deleted(3) + replies.bye_removed(2),
        True,
    ),
    ("input after quit is ignored", b"QUIT\r\nUSER x\r\n", GREETING + replies.BYE, True),
    (
        "line too long, then carry on",
        b"NOOP " + b"x" * 100 + b"\r\nCAPA\r\n",
        GREETING + replies.LINE_TOO_LONG + replies.CAPABILITIES,
        False,
    ),
]


@pytest.mark.parametrize("run", RUNNERS, ids=lambda r: r.__name__)
@pytest.mark.parametrize(
    ("name", "data", "expected", "closed"), TRANSCRIPTS, ids=[t[0] for t in TRANSCRIPTS]
)
def test_transcript(run, name: str, data: bytes, expected: bytes, closed: bool) -> None:
    shell = run(data)
    assert bytes(shell.out) == expected
    assert (shell.closed is not None) == closed


def test_quit_with_deletions_names_the_seqs_in_order() -> None:
    shell = run_whole(LOGIN + b"DELE 3\r\nDELE 1\r\nQUIT\r\n")
    (commit,) = [r for r in shell.requests if isinstance(r, CommitDeletions)]
    assert commit == CommitDeletions("jjordan", (10, 12))


def test_failed_update_deletes_nothing_and_says_so() -> None:
    shell = run_whole(LOGIN + b"DELE 1\r\nQUIT\r\n", commit_ok=False)
    assert shell.out.endswith(replies.deleted(1) + replies.UPDATE_FAILED)
    assert shell.closed == Close("quit")


def test_no_bye_before_the_deletions_are_committed() -> None:
    conn = Pop3Connection(hostname=HOST)
    conn.receive_data(LOGIN + b"DELE 1\r\nQUIT\r\nNOOP\r\n")
    out = bytearray()
    while True:
        event = conn.next_event()
        if isinstance(event, SendReply):
            out += event.data
        elif isinstance(event, Authenticate):
            conn.authenticated("jjordan")
        elif isinstance(event, OpenMailbox):
            conn.mailbox_opened(MESSAGES)
        else:
            break
    assert event == CommitDeletions("jjordan", (10,))
    assert conn.state is State.UPDATE
    assert replies.BYE not in out and b"signing off" not in out
    with pytest.raises(ProtocolMisuse):
        conn.next_event()  # nothing more until the shell answers
    conn.deletions_committed()
    assert conn.next_event() == SendReply(replies.bye_removed(1))
    assert conn.next_event() == Close("quit")


def test_retr_content_only_after_the_fetch_is_answered() -> None:
    conn = Pop3Connection(hostname=HOST)
    conn.receive_data(LOGIN + b"RETR 2\r\nNOOP\r\n")
    events = []
    while not isinstance(event := conn.next_event(), FetchMessage):
        events.append(event)
        if isinstance(event, Authenticate):
            conn.authenticated("jjordan")
        elif isinstance(event, OpenMailbox):
            conn.mailbox_opened(MESSAGES)
    assert event == FetchMessage(2, MESSAGES[1], "RETR", None)
    assert all(b"l1" not in e.data for e in events if isinstance(e, SendReply))
    conn.fetch_failed()
    assert conn.next_event() == SendReply(replies.FETCH_FAILED)
    assert conn.next_event() == SendReply(replies.NOOP)  # the pipelined NOOP, only now
    assert conn.next_event() is NEED_DATA


def test_answering_without_a_request_is_a_misuse() -> None:
    conn = Pop3Connection(hostname=HOST)
    with pytest.raises(ProtocolMisuse):
        conn.deletions_committed()


def test_bad_command_budget_closes() -> None:
    shell = run_whole(b"BAD\r\n" * 5, budget=3)
    assert bytes(shell.out) == GREETING + replies.UNKNOWN_COMMAND * 3 + replies.TOO_MANY_ERRORS
    assert shell.closed == Close("errors")


def test_failed_logins_count_towards_the_budget() -> None:
    shell = run_whole(b"USER a\r\nPASS b\r\n" * 3, budget=3)
    assert shell.out.endswith(replies.AUTH_FAILED + replies.TOO_MANY_ERRORS)
    assert shell.closed == Close("errors")


def test_plaintext_disabled() -> None:
    shell = run_whole(b"CAPA\r\nUSER jjordan\r\nPASS x\r\n", plaintext=False)
    assert bytes(shell.out) == (
        GREETING
        + replies.CAPABILITIES_NO_USER
        + replies.PLAINTEXT_DISABLED
        + replies.PLAINTEXT_DISABLED
    )
    assert b"USER" not in replies.CAPABILITIES_NO_USER
    assert not any(isinstance(r, Authenticate) for r in shell.requests)


def test_eof_processes_pipelined_commands_first() -> None:
    shell = Shell()
    shell.conn.receive_data(LOGIN + b"DELE 2\r\nQUIT\r\n")
    shell.conn.receive_data(b"")
    shell.pump()
    assert shell.out.endswith(replies.bye_removed(1))
    assert shell.closed == Close("quit")


def test_eof_mid_session_closes_without_update() -> None:
    shell = Shell()
    shell.feed(LOGIN + b"DELE 2\r\nQU")
    shell.feed(b"")
    assert shell.closed == Close("eof")
    assert not any(isinstance(r, CommitDeletions) for r in shell.requests)


def test_capabilities_advertise_the_rfc_2449_set() -> None:
    lines = replies.CAPABILITIES.split(b"\r\n")
    for capability in (
        b"TOP",
        b"UIDL",
        b"USER",
        b"RESP-CODES",
        b"PIPELINING",
        b"EXPIRE NEVER",
        b"IMPLEMENTATION eventmail",
    ):
        assert capability in lines
    assert b"APOP" not in replies.CAPABILITIES


# --- framing properties ------------------------------------------------------------

line_text = st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b)


@given(st.lists(line_text, max_size=20), st.lists(st.integers(1, 30), min_size=1))
def test_line_buffer_returns_lines_across_any_chunking(lines: list[bytes], sizes: list[int]):
    data = b"".join(line + b"\r\n" for line in lines)
    buffer = LineBuffer(max_line=64)
    got: list[bytes | object] = []
    position = 0
    for size in sizes * (len(data) // len(sizes) + 1):
        if position >= len(data):
            break
        buffer.feed(data[position : position + size])
        position += size
        while (line := buffer.next_line()) is not None:
            got.append(line)
    assert got == lines
    assert buffer.pending == 0


@given(st.binary(max_size=200), st.integers(10, 80))
def test_over_long_lines_are_reported_once_and_skipped(junk: bytes, limit: int):
    junk = junk.replace(b"\n", b"")
    long_line = b"x" * limit + junk
    buffer = LineBuffer(max_line=limit)
    for byte in long_line + b"\r\nNOOP\r\n":
        buffer.feed(bytes([byte]))
    assert buffer.next_line() is TOO_LONG
    assert buffer.next_line() == b"NOOP"
    assert buffer.next_line() is None


@given(st.lists(line_text, max_size=30))
def test_stuff_then_unstuff_is_identity(lines: list[bytes]):
    message = b"".join(line + b"\r\n" for line in lines)
    stuffed = stuff(message)
    assert unstuff(stuffed) == message
    body = stuffed.split(b"\r\n")[:-2]  # drop the terminator and the final empty piece
    assert b"." not in body, "a lone dot inside the body would end it early"
    assert all(not line.startswith(b".") or line.startswith(b"..") for line in body)


@given(st.binary(max_size=300))
def test_no_stored_bytes_can_end_a_response_early(content: bytes):
    stuffed = stuff(content)
    # Whether a client splits on CRLF or on LF, the only lone "." is the terminator.
    for separator in (b"\r\n", b"\n"):
        pieces = [p.rstrip(b"\r") for p in stuffed.split(separator)]
        assert pieces.index(b".") == len(pieces) - 2


@given(st.lists(st.sampled_from([b".", b"\r", b"\n", b"\r\n", b"a", b".."]), max_size=40))
def test_stuff_fast_path_agrees_with_the_line_by_line_stuffing(pieces: list[bytes]):
    for content in (b"".join(pieces), b"".join(pieces) + b"\r\n"):
        assert stuff(content) == stuff_lines(as_lines(content))


def test_top_lines_keeps_headers_blank_line_and_n_body_lines() -> None:
    message = b"A: 1\r\nB: 2\r\n\r\nx\r\n\r\ny\r\n"
    assert top_lines(message, 0) == [b"A: 1", b"B: 2", b""]
    assert top_lines(message, 2) == [b"A: 1", b"B: 2", b"", b"x", b""]
    assert top_lines(message, 10) == [b"A: 1", b"B: 2", b"", b"x", b"", b"y"]
