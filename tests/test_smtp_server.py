"""The SMTP Trio shell on memory streams, with a mock clock for every timeout."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from itertools import count

import pytest
import trio
import trio.testing

from eventmail.config import SmtpConfig
from eventmail.events import Event, MessageAccepted, MessageRefused, RecipientRefused
from eventmail.smtp import replies
from eventmail.smtp.server import SmtpServer
from eventmail.store import Append, LogUnavailable, MemoryLog, Record
from eventmail.store.committer import GroupCommitter

HOST = "mx.example.test"
PEER = "192.0.2.7:50123"
ACCOUNTS = {"bob", "carol"}
WHEN = datetime(2026, 11, 29, 23, 40, 5, tzinfo=UTC)
GREETING = replies.greeting(HOST).encode()
EHLO = b"EHLO client.example\r\n"
ENVELOPE = EHLO + b"MAIL FROM:<ana@example.org>\r\nRCPT TO:<bob@localhost>\r\n"
REPLY_END = re.compile(rb"(?m)^\d{3} [^\r\n]*\r\n")


class Client:
    """The client's end of a memory stream pair: send bytes, read whole replies."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = b""

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def reply(self) -> bytes:
        while not (match := REPLY_END.search(self.buffer)):
            data = await self.stream.receive_some()
            if not data:
                raise EOFError(self.buffer)
            self.buffer += data
        reply, self.buffer = self.buffer[: match.end()], self.buffer[match.end() :]
        return reply

    async def replies(self, n: int) -> list[bytes]:
        return [await self.reply() for _ in range(n)]

    async def rest(self) -> bytes:
        """Everything until the server closes the connection."""
        while data := await self.stream.receive_some():
            self.buffer += data
        rest, self.buffer = self.buffer, b""
        return rest


class Harness:
    def __init__(self, nursery: trio.Nursery, config: SmtpConfig, append=None) -> None:
        self.nursery = nursery
        self.log = MemoryLog()
        self.committer = GroupCommitter(self.log)
        ids = count(1)
        self.server = SmtpServer(
            config,
            domains=["localhost"],
            hostname=HOST,
            is_local_account=lambda name: name in ACCOUNTS,
            append=append or self.committer.append,
            now=lambda: WHEN,
            new_id=lambda: f"ID{next(ids)}",
        )

    async def connect(self, peer: str = PEER, *, greeting: bool = True) -> Client:
        client_end, server_end = trio.testing.memory_stream_pair()
        self.nursery.start_soon(self.server.handle, server_end, peer)
        client = Client(client_end)
        if greeting:
            assert await client.reply() == GREETING
        return client

    def events(self, kind: type[Event] | None = None) -> list[Event]:
        found = [r.event for r in self.log.read_after(0)]
        return [e for e in found if kind is None or isinstance(e, kind)]


@asynccontextmanager
async def harness(append=None, **changes: object) -> AsyncIterator[Harness]:
    async with trio.open_nursery() as nursery:
        h = Harness(nursery, SmtpConfig(**changes), append)  # type: ignore[arg-type]
        await nursery.start(h.committer.run)
        yield h
        nursery.cancel_scope.cancel()


async def test_a_message_is_recorded_with_its_received_header() -> None:
    async with harness() as h:
        client = await h.connect()
        await client.send(ENVELOPE + b"DATA\r\n")
        await client.replies(4)
        await client.send(b"Subject: hi\r\n\r\n..dotted\r\n.\r\nQUIT\r\n")
        assert await client.reply() == replies.message_accepted("ID1").encode()
        assert await client.rest() == replies.BYE.encode()
    (event,) = h.events()
    (record,) = h.log.read_after(0)
    expected = (
        b"Received: from client.example ([192.0.2.7])\r\n"
        b"\tby mx.example.test (eventmail) with ESMTP id ID1\r\n"
        b"\tfor <bob@localhost>; Sun, 29 Nov 2026 23:40:05 +0000\r\n"
        b"Subject: hi\r\n\r\n.dotted\r\n"
    )
    assert record.message == expected
    assert isinstance(event, MessageAccepted)
    assert event.message_id == "ID1"
    assert (event.mail_from, event.peer, event.helo) == ("ana@example.org", PEER, "client.example")
    assert [r.account for r in event.recipients] == ["bob"]
    assert event.size == len(expected)
    assert event.sha256 == hashlib.sha256(expected).hexdigest()


async def test_received_header_without_for_when_several_recipients() -> None:
    async with harness() as h:
        client = await h.connect()
        await client.send(ENVELOPE + b"RCPT TO:<carol@localhost>\r\nDATA\r\nhi\r\n.\r\n")
        assert (await client.replies(6))[-1] == replies.message_accepted("ID1").encode()
    (record,) = h.log.read_after(0)
    assert record.message is not None
    assert b"for <" not in record.message
    assert b"with ESMTP id ID1;\r\n\tSun, 29 Nov 2026 23:40:05 +0000\r\n" in record.message
    assert record.accounts == ("bob", "carol")


async def test_250_only_after_the_commit() -> None:
    release, called = trio.Event(), trio.Event()
    received: list[bytes] = []

    async with harness() as h:

        async def slow_append(event: Event, message: bytes | None) -> Record:
            called.set()
            await release.wait()
            return await h.committer.append(event, message)

        h.server.append = slow_append
        client = await h.connect()

        bye = trio.Event()

        async def collect() -> None:
            while data := await client.stream.receive_some():
                received.append(data)
                if b"".join(received).endswith(replies.BYE.encode()):
                    bye.set()

        h.nursery.start_soon(collect)
        await client.send(ENVELOPE + b"DATA\r\nhello\r\n.\r\n")
        await called.wait()
        await trio.testing.wait_all_tasks_blocked()
        assert b"354 " in b"".join(received)
        assert b"250 2.0.0 OK: queued" not in b"".join(received)
        assert h.events() == []
        release.set()
        await client.send(b"QUIT\r\n")
        await bye.wait()
    everything = b"".join(received)
    assert everything.endswith(replies.message_accepted("ID1").encode() + replies.BYE.encode())
    assert len(h.events(MessageAccepted)) == 1


async def test_a_failing_log_gets_451_and_the_session_goes_on() -> None:
    async def failing(event: Event, message: bytes | None) -> Record:
        raise LogUnavailable("disk full")

    async with harness(append=failing) as h:
        client = await h.connect()
        await client.send(ENVELOPE + b"DATA\r\nhello\r\n.\r\n")
        assert (await client.replies(5))[-1] == replies.LOG_WRITE_FAILED.encode()
        await client.send(b"MAIL FROM:<ana@example.org>\r\n")
        assert await client.reply() == replies.SENDER_OK.encode()
    assert h.events() == []


async def test_idle_client_is_disconnected(autojump_clock: trio.testing.MockClock) -> None:
    async with harness(idle_timeout=30.0) as h:
        client = await h.connect()
        start = trio.current_time()
        assert await client.rest() == replies.TIMEOUT.encode()
        assert trio.current_time() - start == pytest.approx(30.0)


async def test_command_timeout_inside_a_transaction(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with harness(idle_timeout=1000.0, command_timeout=60.0) as h:
        client = await h.connect()
        await client.send(EHLO + b"MAIL FROM:<ana@example.org>\r\n")
        await client.replies(2)
        start = trio.current_time()
        assert await client.rest() == replies.TIMEOUT.encode()
        assert trio.current_time() - start == pytest.approx(60.0)


async def test_data_timeout_stores_nothing(autojump_clock: trio.testing.MockClock) -> None:
    async with harness(data_block_timeout=20.0, command_timeout=1000.0) as h:
        client = await h.connect()
        await client.send(ENVELOPE + b"DATA\r\npartial message\r\n")
        await client.replies(4)
        start = trio.current_time()
        assert await client.rest() == replies.TIMEOUT.encode()
        assert trio.current_time() - start == pytest.approx(20.0)
    assert h.events() == []


async def test_client_that_never_reads_is_dropped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with harness(command_timeout=45.0) as h:
        client_end, server_end = trio.testing.lockstep_stream_pair()
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(h.server.handle, server_end, PEER)
        # handle() returned: the greeting could never be delivered.
        assert trio.current_time() - start == pytest.approx(45.0)
        assert h.server.connections == 0
        with pytest.raises(trio.BrokenResourceError):
            await client_end.send_all(b"NOOP\r\n")


async def test_connection_cap() -> None:
    async with harness(max_connections=2) as h:
        first, second = await h.connect(), await h.connect()
        third = await h.connect(greeting=False)
        assert await third.rest() == replies.TOO_MANY_CONNECTIONS.encode()
        assert h.server.connections == 2
        await first.send(b"QUIT\r\n")
        assert await first.rest() == replies.BYE.encode()
        await trio.testing.wait_all_tasks_blocked()
        fourth = await h.connect()  # a slot is free again
        await fourth.send(b"NOOP\r\n")
        assert await fourth.reply() == replies.OK.encode()
        await second.send(b"QUIT\r\n")
        await fourth.send(b"QUIT\r\n")


async def test_error_budget_closes_the_connection() -> None:
    async with harness(error_budget=2) as h:
        client = await h.connect()
        await client.send(b"FOO\r\nBAR\r\nNOOP\r\n")
        expected = replies.UNRECOGNISED.encode() * 2 + replies.TOO_MANY_ERRORS.encode()
        assert await client.rest() == expected


async def test_http_request_is_closed_at_once() -> None:
    async with harness() as h:
        client = await h.connect()
        await client.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert await client.rest() == b""


async def test_an_unexpected_error_closes_only_that_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(name: str) -> bool:
        if name == "carol":
            raise RuntimeError("fold exploded")
        return name in ACCOUNTS

    async with harness() as h:
        h.server.is_local_account = broken
        victim = await h.connect(peer="198.51.100.9:4242")
        bystander = await h.connect()
        await victim.send(EHLO + b"MAIL FROM:<a@b.example>\r\nRCPT TO:<carol@localhost>\r\n")
        rest = await victim.replies(2) and await victim.rest()
        assert rest == replies.INTERNAL_ERROR.encode()
        assert b"Traceback" not in rest
        await bystander.send(ENVELOPE + b"DATA\r\nhi\r\n.\r\n")
        assert (await bystander.replies(5))[-1] == replies.message_accepted("ID1").encode()
    assert "198.51.100.9:4242" in caplog.text and "fold exploded" in caplog.text


async def test_refusals_are_audited_up_to_the_bound() -> None:
    async with harness(max_audited_refusals=3) as h:
        client = await h.connect()
        rcpts = b"".join(f"RCPT TO:<nobody{i}@localhost>\r\n".encode() for i in range(2))
        await client.send(ENVELOPE + rcpts + b"RCPT TO:<x@elsewhere.example>\r\n")
        got = await client.replies(6)
        assert got[3:] == [replies.UNKNOWN_ACCOUNT.encode()] * 2 + [replies.RELAY_DENIED.encode()]
        await client.send(b"DATA\r\nbare\nLF\r\n.\r\n")
        assert await client.replies(2) == [
            replies.START_DATA.encode(),
            replies.BARE_CR_LF_IN_DATA.encode(),
        ]
    refused = h.events()
    assert [type(e) for e in refused] == [RecipientRefused] * 3  # the 4th was not recorded
    first = refused[0]
    assert isinstance(first, RecipientRefused)
    assert first.address == "nobody0@localhost"
    assert first.reason == replies.UNKNOWN_ACCOUNT.text
    assert (first.mail_from, first.peer, first.helo) == ("ana@example.org", PEER, "client.example")


async def test_oversized_message_is_refused_and_audited() -> None:
    async with harness(max_message_size=1000) as h:
        client = await h.connect()
        body = (b"y" * 98 + b"\r\n") * 50
        await client.send(ENVELOPE + b"DATA\r\n" + body + b".\r\nNOOP\r\n")
        got = await client.replies(6)
        assert got[-2:] == [replies.SIZE_EXCEEDED.encode(), replies.OK.encode()]
    (refused,) = h.events()
    assert isinstance(refused, MessageRefused)
    assert (refused.reason, refused.size) == (replies.SIZE_EXCEEDED.text, len(body))
    assert refused.recipients == ("bob",)


async def test_client_vanishing_in_data_stores_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with harness() as h:
        client = await h.connect()
        await client.send(ENVELOPE + b"DATA\r\nhalf a mess")
        await client.replies(4)
        await client.stream.aclose()
        await trio.testing.wait_all_tasks_blocked()
        assert h.server.connections == 0
    assert h.events() == []
    assert caplog.records == []


# --- shutdown ---------------------------------------------------------------------------


async def shut_down(h: Harness, grace: float, done: trio.Event) -> None:
    await h.server.shutdown(grace)
    done.set()


async def test_shutdown_closes_idle_sessions_and_refuses_new_ones(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with harness() as h:
        idle = await h.connect()
        in_transaction = await h.connect()
        await in_transaction.send(EHLO + b"MAIL FROM:<a@b.example>\r\n")
        await in_transaction.replies(2)
        done = trio.Event()
        start = trio.current_time()
        h.nursery.start_soon(shut_down, h, 10.0, done)
        assert await idle.rest() == replies.SHUTTING_DOWN.encode()
        assert await in_transaction.rest() == replies.SHUTTING_DOWN.encode()
        await done.wait()
        assert trio.current_time() - start < 10.0  # nobody needed the grace period
        late = await h.connect(greeting=False)
        assert await late.rest() == replies.SHUTTING_DOWN.encode()


async def test_shutdown_lets_a_message_in_data_finish(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log = MemoryLog()

    async def append_in_loop(event: Event, message: bytes | None) -> Record:
        # No worker thread: the autojump clock would skip the grace while it ran.
        await trio.lowlevel.checkpoint()
        return log.append([Append(event, message)])[0]

    async with harness(append=append_in_loop) as h:
        h.log = log
        client = await h.connect()
        await client.send(ENVELOPE + b"DATA\r\nfirst half\r\n")
        await client.replies(4)
        done = trio.Event()
        h.nursery.start_soon(shut_down, h, 10.0, done)
        await trio.sleep(3.0)
        assert not done.is_set()
        await client.send(b"second half\r\n.\r\n")
        assert await client.reply() == replies.message_accepted("ID1").encode()
        assert await client.rest() == replies.SHUTTING_DOWN.encode()
        await done.wait()
    (event,) = h.events()
    assert isinstance(event, MessageAccepted)


async def test_shutdown_grace_runs_out_for_a_slow_message(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with harness(data_block_timeout=1000.0) as h:
        client = await h.connect()
        await client.send(ENVELOPE + b"DATA\r\nnever finished\r\n")
        await client.replies(4)
        done = trio.Event()
        start = trio.current_time()
        h.nursery.start_soon(shut_down, h, 10.0, done)
        assert await client.rest() == replies.SHUTTING_DOWN.encode()
        await done.wait()
        assert trio.current_time() - start == pytest.approx(10.0)
    assert h.events() == []


async def test_shutdown_grace_runs_out_while_committing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    never = trio.Event()

    async def stuck(event: Event, message: bytes | None) -> Record:
        await never.wait()
        raise AssertionError("unreachable")

    async with harness(append=stuck) as h:
        client = await h.connect()
        await client.send(ENVELOPE + b"DATA\r\nhello\r\n.\r\n")
        await client.replies(4)
        done = trio.Event()
        h.nursery.start_soon(shut_down, h, 5.0, done)
        assert await client.rest() == replies.SHUTTING_DOWN.encode()
        await done.wait()
    assert h.events() == []


async def test_serve_stops_accepting_on_shutdown() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with harness() as h:
        await h.nursery.start(h.server.serve, listeners)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        client = Client(stream)
        assert await client.reply() == GREETING
        await h.server.shutdown(1.0)
        assert await client.rest() == replies.SHUTTING_DOWN.encode()
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", port)
