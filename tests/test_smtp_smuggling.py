"""SMTP smuggling (RFC 5321 2.3.8, 4.1.1.4): no separator but CRLF.CRLF ends the data.

A smuggling attempt hides a second transaction inside a message behind an
end-of-data look-alike that some other server honours. Here the data ends only
at a literal CRLF "." CRLF (which every conforming sender dot-stuffs, so it can
never be smuggled), and any bare CR or LF gets the whole message refused. So a
look-alike never yields a second message, and a message carrying one is never
stored.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from eventmail.config import SmtpConfig
from eventmail.events import MessageAccepted, MessageRefused
from eventmail.smtp import replies
from eventmail.smtp.protocol import (
    NEED_DATA,
    CheckRecipient,
    CloseConnection,
    MessageComplete,
    SendReply,
    SmtpProtocol,
)
from eventmail.smtp.server import SmtpServer
from eventmail.store import MemoryLog
from eventmail.store.committer import GroupCommitter

SEPARATORS = [
    b"\n.\n",
    b"\n.\r\n",
    b"\r\n.\n",
    b"\r.\r\n",
    b"\r.\n",
    b"\n.\r",
    b"\r\n.\r",
    b"\r.\r",
    b"\r\n\0.\r\n",
    b"\r\n.\0\r\n",
    b"\n\0.\n",
    b"\0\n.\n",
    b"\r\r\n",
    b"\r\r\n.\r\r\n",
    b"\n\n.\n\n",
]

HEAD = (
    b"EHLO attacker.example\r\n"
    b"MAIL FROM:<ana@example.org>\r\n"
    b"RCPT TO:<bob@localhost>\r\n"
    b"DATA\r\n"
    b"From: ana@example.org\r\nSubject: harmless\r\n\r\nhello"
)
SMUGGLED = (
    b"MAIL FROM:<ceo@localhost>\r\n"
    b"RCPT TO:<bob@localhost>\r\n"
    b"DATA\r\n"
    b"From: ceo@localhost\r\nSubject: smuggled\r\n\r\npay now\r\n"
)
TAIL = b"\r\n.\r\nQUIT\r\n"


def has_bare_cr_or_lf(data: bytes) -> bool:
    crlf = data.count(b"\r\n")
    return data.count(b"\r") != crlf or data.count(b"\n") != crlf


def run_core(data: bytes, *, byte_by_byte: bool) -> tuple[list[SendReply], list[MessageComplete]]:
    core = SmtpProtocol(SmtpConfig(), hostname="mx.test", domains=["localhost"])
    sent: list[SendReply] = []
    messages: list[MessageComplete] = []
    chunks = [data[i : i + 1] for i in range(len(data))] if byte_by_byte else [data]
    for chunk in chunks:
        core.receive_data(chunk)
        while (event := core.next_event()) is not NEED_DATA:
            if isinstance(event, CloseConnection):
                return sent, messages
            if isinstance(event, SendReply):
                sent.append(event)
            elif isinstance(event, CheckRecipient):
                core.recipient_checked(True)
            elif isinstance(event, MessageComplete):
                messages.append(event)
                core.message_stored(f"ID{len(messages)}")
    return sent, messages


def check_no_second_message(separator: bytes, *, byte_by_byte: bool) -> None:
    sent, messages = run_core(HEAD + separator + SMUGGLED + TAIL, byte_by_byte=byte_by_byte)
    assert sent.count(SendReply(replies.START_DATA)) == 1
    assert sent.count(SendReply(replies.SENDER_OK)) == 1
    assert len(messages) <= 1
    if has_bare_cr_or_lf(separator):
        assert messages == []
        assert SendReply(replies.BARE_CR_LF_IN_DATA) in sent
    else:
        # No bare CR/LF (a NUL variant): one message, the smuggled text is only its content.
        (message,) = messages
        assert b"Subject: smuggled" in message.data
    assert sent[-1] == SendReply(replies.BYE)


@pytest.mark.parametrize("byte_by_byte", [False, True], ids=["whole", "bytewise"])
@pytest.mark.parametrize("separator", SEPARATORS, ids=repr)
def test_separator_never_yields_a_second_message(separator: bytes, byte_by_byte: bool) -> None:
    check_no_second_message(separator, byte_by_byte=byte_by_byte)


@settings(max_examples=300)
@given(st.lists(st.sampled_from([b"\r", b"\n", b".", b"\0", b" ", b"\r\n"]), max_size=8))
def test_any_look_alike_never_yields_a_second_message(pieces: list[bytes]) -> None:
    separator = b"".join(pieces)
    # The literal end of data is not a look-alike: a conforming sender stuffs it.
    if b"\r\n.\r\n" in b"hello" + separator + SMUGGLED:
        return
    check_no_second_message(separator, byte_by_byte=False)


@pytest.mark.parametrize("separator", SEPARATORS, ids=repr)
async def test_server_stores_no_smuggled_message(separator: bytes) -> None:
    log = MemoryLog()
    committer = GroupCommitter(log)
    server = SmtpServer(
        SmtpConfig(),
        domains=["localhost"],
        hostname="mx.test",
        is_local_account=lambda name: name == "bob",
        append=committer.append,
    )
    client, server_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        nursery.start_soon(server.handle, server_end, "192.0.2.66:1")
        await client.send_all(HEAD + separator + SMUGGLED + TAIL)
        received = b""
        while data := await client.receive_some():
            received += data
        nursery.cancel_scope.cancel()
    accepted = [r for r in log.read_after(0) if isinstance(r.event, MessageAccepted)]
    assert received.count(b"\r\n354 ") == 1
    if has_bare_cr_or_lf(separator):
        assert accepted == []
        assert [r.type for r in log.read_after(0)] == [MessageRefused.__name__]
    else:
        assert len(accepted) == 1
