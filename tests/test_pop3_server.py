"""The POP3 shell on memory streams, with a mock clock and the in-memory backend."""

from __future__ import annotations

import hashlib

import pytest
import trio
import trio.testing

from eventmail.config import Pop3Config
from eventmail.events import AuthenticationFailed, MailboxFetched, MailboxReset, MessageAccepted
from eventmail.netio import is_loopback, peer_host
from eventmail.pop3 import replies
from eventmail.pop3.backend import MailboxMessage
from eventmail.pop3.memory import MemoryPop3Backend
from eventmail.pop3.server import OPEN_MAILBOX_TIMEOUT, Pop3Server

HOST = "mail.test"
PEER = "127.0.0.1:40000"
FIRST = b"Subject: first\r\n\r\nbody one\r\n.starts with a dot\r\n"
SECOND = b"Subject: second\r\n\r\nbody two\r\n"


class Wire:
    """One client connection: the server reads what we ``send`` and writes what we ``expect``."""

    def __init__(self) -> None:
        self.to_server = trio.testing.MemoryReceiveStream()
        self.from_server = trio.testing.MemorySendStream()
        self.server_side = trio.StapledStream(self.from_server, self.to_server)
        self.buffer = bytearray()

    def send(self, data: bytes) -> None:
        self.to_server.put_data(data)

    async def expect(self, expected: bytes) -> None:
        while len(self.buffer) < len(expected):
            chunk = await self.from_server.get_data()
            if not chunk:
                break
            self.buffer += chunk
        got = bytes(self.buffer[: len(expected)])
        del self.buffer[: len(expected)]
        assert got == expected

    async def expect_closed(self) -> None:
        rest = bytearray(self.buffer)
        while chunk := await self.from_server.get_data():
            rest += chunk
        assert rest == b"", f"unexpected bytes before close: {bytes(rest)!r}"

    def nothing_sent(self) -> bool:
        try:
            self.buffer += self.from_server.get_data_nowait()
        except trio.WouldBlock:
            return not self.buffer
        return False


def make_server(backend: MemoryPop3Backend, **config: object) -> Pop3Server:
    return Pop3Server(Pop3Config(**config), backend=backend, hostname=HOST)  # type: ignore[arg-type]


@pytest.fixture
def backend() -> MemoryPop3Backend:
    mail = MemoryPop3Backend({"jjordan": "secret", "ana": "hola"})
    mail.deliver("jjordan", FIRST)
    mail.deliver("jjordan", SECOND)
    return mail


async def connect(nursery: trio.Nursery, server: Pop3Server, peer: str = PEER) -> Wire:
    wire = Wire()
    nursery.start_soon(server.handle, wire.server_side, peer)
    await wire.expect(replies.greeting(HOST))
    return wire


async def login(wire: Wire, user: str = "jjordan", password: str = "secret") -> None:
    wire.send(f"USER {user}\r\nPASS {password}\r\n".encode())
    await wire.expect(replies.USER_ACCEPTED)


async def logged_in_as_jjordan(nursery: trio.Nursery, server: Pop3Server) -> Wire:
    """A session logged in to the fixture's mailbox of two messages."""
    wire = await connect(nursery, server)
    await login(wire)
    await wire.expect(replies.logged_in(2, len(FIRST) + len(SECOND)))
    return wire


def events_of(backend: MemoryPop3Backend, kind: type) -> list:
    return [e for e in backend.events() if isinstance(e, kind)]


async def test_retr_records_the_fetch_and_quit_records_the_reset(backend: MemoryPop3Backend):
    server = make_server(backend)
    async with trio.open_nursery() as nursery:
        wire = await logged_in_as_jjordan(nursery, server)
        wire.send(b"RETR 1\r\nTOP 2 0\r\nDELE 1\r\nQUIT\r\n")
        await wire.expect(
            replies.retr(len(FIRST))
            + b"Subject: first\r\n\r\nbody one\r\n..starts with a dot\r\n.\r\n"
            + replies.TOP_FOLLOWS
            + b"Subject: second\r\n\r\n.\r\n"
            + replies.deleted(1)
            + replies.bye_removed(1)
        )
        await wire.expect_closed()
    fetched = events_of(backend, MailboxFetched)
    assert [(e.account, e.message_seq, e.command, e.peer) for e in fetched] == [
        ("jjordan", 1, "RETR", PEER),
        ("jjordan", 2, "TOP", PEER),
    ]
    assert fetched[0].uidl.startswith("1.")
    assert events_of(backend, MailboxReset) == [
        MailboxReset(account="jjordan", removed=(1,), peer=PEER)
    ]
    assert [m.seq for m in await backend.open_mailbox("jjordan")] == [2]
    assert "jjordan" not in server.locked


async def test_snapshot_hides_mail_arriving_during_the_session(backend: MemoryPop3Backend):
    server = make_server(backend)
    async with trio.open_nursery() as nursery:
        wire = await logged_in_as_jjordan(nursery, server)
        late = backend.deliver("jjordan", b"Subject: late\r\n\r\nlate\r\n")
        wire.send(b"STAT\r\nLIST 3\r\nDELE 1\r\nDELE 2\r\nQUIT\r\n")
        await wire.expect(
            replies.stat(2, len(FIRST) + len(SECOND))
            + replies.NO_SUCH_MESSAGE
            + replies.deleted(1)
            + replies.deleted(2)
            + replies.bye_removed(2)
        )
        wire = await connect(nursery, server)
        await login(wire)
        await wire.expect(replies.logged_in(1, late.octets))
        wire.send(b"UIDL\r\nQUIT\r\n")
        await wire.expect(replies.UIDL_FOLLOWS + replies.uidl_line(1, late.uidl) + b".\r\n")
        await wire.expect(replies.BYE)


async def test_second_session_on_a_mailbox_is_in_use_until_the_first_drops(
    backend: MemoryPop3Backend,
):
    server = make_server(backend)
    async with trio.open_nursery() as nursery:
        first = await connect(nursery, server)
        await login(first)
        await first.expect(replies.logged_in(2, len(FIRST) + len(SECOND)))
        second = await connect(nursery, server, "127.0.0.1:40001")
        await login(second)
        await second.expect(replies.IN_USE)
        # Another account is not affected.
        other = await connect(nursery, server, "127.0.0.1:40002")
        await login(other, "ana", "hola")
        await other.expect(replies.logged_in(0, 0))
        first.to_server.put_eof()  # the first client just goes away
        await first.expect_closed()
        await login(second)
        await second.expect(replies.logged_in(2, len(FIRST) + len(SECOND)))
        second.send(b"QUIT\r\n")
        other.send(b"QUIT\r\n")
    assert server.locked == set()


async def test_dropped_connection_deletes_nothing(backend: MemoryPop3Backend):
    server = make_server(backend)
    async with trio.open_nursery() as nursery:
        wire = await logged_in_as_jjordan(nursery, server)
        wire.send(b"DELE 1\r\nDELE 2\r\n")
        await wire.expect(replies.deleted(1) + replies.deleted(2))
        wire.to_server.put_eof()
        await wire.expect_closed()
    assert events_of(backend, MailboxReset) == []
    assert len(await backend.open_mailbox("jjordan")) == 2
    assert server.locked == set()


async def test_quit_answers_only_after_the_reset_is_durable(backend: MemoryPop3Backend):
    server = make_server(backend)
    gate = trio.Event()
    async with trio.open_nursery() as nursery:
        wire = await logged_in_as_jjordan(nursery, server)
        backend.append_gate = gate
        wire.send(b"DELE 2\r\nQUIT\r\n")
        await wire.expect(replies.deleted(2))
        await trio.testing.wait_all_tasks_blocked()
        assert backend.appends_started == 1  # the MailboxReset is in flight...
        assert wire.nothing_sent()  # ...and no +OK has been written
        assert events_of(backend, MailboxReset) == []
        gate.set()
        await wire.expect(replies.bye_removed(1))
        await wire.expect_closed()
    assert events_of(backend, MailboxReset) == [
        MailboxReset(account="jjordan", removed=(2,), peer=PEER)
    ]


async def test_retr_sends_content_with_the_fetch_record_queued_not_yet_durable(
    backend: MemoryPop3Backend,
):
    server = make_server(backend)
    gate = trio.Event()
    queued_when_written: list[list[object]] = []
    async with trio.open_nursery() as nursery:
        wire = await logged_in_as_jjordan(nursery, server)
        backend.append_gate = gate

        async def note_queue() -> None:
            queued_when_written.append(backend.queued())

        wire.from_server.send_all_hook = note_queue
        wire.send(b"RETR 2\r\n")
        # The content arrives although the record is held at the gate...
        await wire.expect(replies.retr(len(SECOND)) + SECOND + b".\r\n")
        assert events_of(backend, MailboxFetched) == []
        # ...and the record had been queued before the content was written.
        fetched = MailboxFetched(
            account="jjordan", message_seq=2, uidl=wire_uidl(backend, 2), command="RETR", peer=PEER
        )
        assert queued_when_written == [[fetched]]
        gate.set()
        wire.send(b"QUIT\r\n")
        await wire.expect(replies.BYE)
        await wire.expect_closed()
    assert events_of(backend, MailboxFetched) == [fetched]


def wire_uidl(backend: MemoryPop3Backend, seq: int) -> str:
    record = next(r for r in backend.log.read_after(0) if r.seq == seq)
    assert record.message is not None
    return f"{seq}.{hashlib.sha256(record.message).hexdigest()[:16]}"


async def test_quit_with_deletions_waits_for_the_fetch_records_then_the_reset(
    backend: MemoryPop3Backend,
):
    server = make_server(backend)
    gate = trio.Event()
    async with trio.open_nursery() as nursery:
        wire = await logged_in_as_jjordan(nursery, server)
        backend.append_gate = gate
        wire.send(b"RETR 2\r\nTOP 1 0\r\nDELE 1\r\nQUIT\r\n")
        await wire.expect(
            replies.retr(len(SECOND))
            + SECOND
            + b".\r\n"
            + replies.TOP_FOLLOWS
            + b"Subject: first\r\n\r\n.\r\n"
            + replies.deleted(1)
        )
        await trio.testing.wait_all_tasks_blocked()
        # Both fetch records are in flight, the reset is not queued before they are durable.
        assert [type(e) for e in backend.queued()] == [MailboxFetched, MailboxFetched]
        assert wire.nothing_sent()
        gate.set()
        await wire.expect(replies.bye_removed(1))
        await wire.expect_closed()
    stored = [e for e in backend.events() if not isinstance(e, MessageAccepted)]
    assert [type(e) for e in stored] == [MailboxFetched, MailboxFetched, MailboxReset]
    assert [(e.message_seq, e.command) for e in stored[:2]] == [(2, "RETR"), (1, "TOP")]
    assert stored[2] == MailboxReset(account="jjordan", removed=(1,), peer=PEER)


async def test_a_failed_fetch_record_refuses_deletions_and_further_retrievals(
    backend: MemoryPop3Backend,
):
    server = make_server(backend)
    gate = trio.Event()
    async with trio.open_nursery() as nursery:
        wire = await logged_in_as_jjordan(nursery, server)
        backend.append_gate = gate
        wire.send(b"RETR 2\r\n")
        await wire.expect(replies.retr(len(SECOND)) + SECOND + b".\r\n")
        # The commit of that record fails after its content went out.
        backend.fail_appends = True
        gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert backend.queued() == []
        # The log works again, but this session served a retrieval it could not record.
        backend.fail_appends = False
        wire.send(b"RETR 2\r\nTOP 1 0\r\nDELE 1\r\nNOOP\r\nQUIT\r\n")
        await wire.expect(
            replies.FETCH_FAILED
            + replies.FETCH_FAILED
            + replies.deleted(1)
            + replies.NOOP
            + replies.UPDATE_FAILED
        )
        await wire.expect_closed()
    assert events_of(backend, MailboxFetched) == []
    assert events_of(backend, MailboxReset) == []
    assert len(await backend.open_mailbox("jjordan")) == 2
    assert server.locked == set()


async def test_a_session_ending_otherwise_waits_for_its_fetch_records(
    backend: MemoryPop3Backend,
):
    server = make_server(backend)
    gate = trio.Event()
    closed = trio.Event()
    async with trio.open_nursery() as nursery:
        wire = await logged_in_as_jjordan(nursery, server)
        backend.append_gate = gate
        wire.send(b"RETR 1\r\n")
        await wire.expect(replies.retr(len(FIRST)))

        async def hang_up() -> None:
            wire.to_server.put_eof()
            while await wire.from_server.get_data():
                pass
            closed.set()

        nursery.start_soon(hang_up)
        await trio.testing.wait_all_tasks_blocked()
        assert not closed.is_set()  # the connection stays open while the record is in flight
        assert "jjordan" in server.locked
        gate.set()
        await closed.wait()
    assert [e.message_seq for e in events_of(backend, MailboxFetched)] == [1]
    assert server.locked == set()


async def test_failed_appends_refuse_and_delete_nothing(backend: MemoryPop3Backend):
    server = make_server(backend)
    async with trio.open_nursery() as nursery:
        wire = await logged_in_as_jjordan(nursery, server)
        backend.fail_appends = True
        wire.send(b"RETR 1\r\nDELE 1\r\nQUIT\r\n")
        await wire.expect(replies.FETCH_FAILED + replies.deleted(1) + replies.UPDATE_FAILED)
        await wire.expect_closed()
    assert events_of(backend, MailboxFetched) == []
    assert events_of(backend, MailboxReset) == []
    assert len(await backend.open_mailbox("jjordan")) == 2


async def test_idle_timeout(backend: MemoryPop3Backend, autojump_clock: trio.testing.MockClock):
    server = make_server(backend, idle_timeout=600.0)
    async with trio.open_nursery() as nursery:
        wire = await logged_in_as_jjordan(nursery, server)
        wire.send(b"DELE 1\r\n")
        await wire.expect(replies.deleted(1))
        start = trio.current_time()
        await wire.expect(replies.IDLE_TIMEOUT)
        assert trio.current_time() - start == pytest.approx(600.0)
        await wire.expect_closed()
    assert events_of(backend, MailboxReset) == []  # autologout: no UPDATE
    assert server.locked == set()


async def test_a_client_that_stops_reading_is_dropped_after_the_idle_timeout(
    backend: MemoryPop3Backend, autojump_clock: trio.testing.MockClock
):
    server = make_server(backend, idle_timeout=600.0)
    client, server_side = trio.testing.lockstep_stream_pair()  # a write waits for a read
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handle, server_side, PEER)
        greeting = replies.greeting(HOST)
        assert await client.receive_some(len(greeting)) == greeting
        await client.send_all(b"USER jjordan\r\nPASS secret\r\n")
        assert await client.receive_some(len(replies.USER_ACCEPTED)) == replies.USER_ACCEPTED
        # The client stops reading: the +OK after the login cannot be written.
        start = trio.current_time()
        while "jjordan" not in server.locked:
            await trio.sleep(0)
        with trio.fail_after(10 * 600.0):
            while server.locked:
                await trio.sleep(1.0)
        assert trio.current_time() - start == pytest.approx(600.0, abs=1.0)
    assert server.active == 0


async def test_failed_logins_are_slowed_per_peer_and_look_alike(
    backend: MemoryPop3Backend, autojump_clock: trio.testing.MockClock
):
    server = make_server(backend, login_delay_base=0.5, login_delay_max=2.0)

    async def failed_login(wire: Wire, user: str, password: str) -> float:
        start = trio.current_time()
        await login(wire, user, password)
        await wire.expect(replies.AUTH_FAILED)  # the same words whether or not user exists
        return trio.current_time() - start

    async with trio.open_nursery() as nursery:
        wire = await connect(nursery, server)
        delays = [
            await failed_login(wire, "jjordan", "wrong"),
            await failed_login(wire, "nobody", "secret"),
            await failed_login(wire, "jjordan", "wrong"),
            await failed_login(wire, "nobody", "x"),
        ]
        assert delays == [0.5, 1.0, 2.0, 2.0]
        # Another address starts from the base delay.
        elsewhere = await connect(nursery, server, "127.0.0.2:5555")
        assert await failed_login(elsewhere, "jjordan", "wrong") == 0.5
        # A success clears the peer's count.
        await login(wire)
        await wire.expect(replies.logged_in(2, len(FIRST) + len(SECOND)))
        wire.send(b"QUIT\r\n")
        await wire.expect(replies.BYE)
        again = await connect(nursery, server)
        assert await failed_login(again, "ana", "wrong") == 0.5
        again.send(b"QUIT\r\n")
        elsewhere.send(b"QUIT\r\n")


async def test_failed_logins_are_audited_up_to_a_bound(
    backend: MemoryPop3Backend, autojump_clock: trio.testing.MockClock
):
    server = make_server(backend, max_audited_failures=2, error_budget=50)
    async with trio.open_nursery() as nursery:
        wire = await connect(nursery, server)
        for user in ("jjordan", "nobody", "ana", "x"):
            await login(wire, user, "wrong")
            await wire.expect(replies.AUTH_FAILED)
        wire.send(b"QUIT\r\n")
        await wire.expect(replies.BYE)
    assert events_of(backend, AuthenticationFailed) == [
        AuthenticationFailed(protocol="pop3", user="jjordan", peer=PEER),
        AuthenticationFailed(protocol="pop3", user="nobody", peer=PEER),
    ]


async def test_connection_cap(backend: MemoryPop3Backend):
    server = make_server(backend, max_connections=1)
    async with trio.open_nursery() as nursery:
        first = await connect(nursery, server)
        refused = Wire()
        await server.handle(refused.server_side, "127.0.0.1:40001")
        await refused.expect(replies.TOO_MANY_CONNECTIONS)
        await refused.expect_closed()
        first.send(b"QUIT\r\n")
        await first.expect(replies.BYE)
        await first.expect_closed()
        again = await connect(nursery, server)
        again.send(b"QUIT\r\n")


class ExplodingBackend(MemoryPop3Backend):
    async def read_message(self, account: str, message: MailboxMessage) -> bytes:
        raise RuntimeError("the spool went away")


async def test_each_connection_is_an_error_boundary(caplog: pytest.LogCaptureFixture):
    backend = ExplodingBackend({"jjordan": "secret"})
    backend.deliver("jjordan", FIRST)
    server = make_server(backend)
    async with trio.open_nursery() as nursery:
        wire = await connect(nursery, server)
        await login(wire)
        await wire.expect(replies.logged_in(1, len(FIRST)))
        wire.send(b"DELE 1\r\nRETR 1\r\nRETR 1\r\n")  # RETR 1 is deleted: a plain -ERR
        await wire.expect(replies.deleted(1) + replies.MESSAGE_DELETED + replies.MESSAGE_DELETED)
        wire.send(b"RSET\r\nRETR 1\r\n")
        await wire.expect(replies.reset(1, len(FIRST)) + replies.INTERNAL_ERROR)
        await wire.expect_closed()
        # The server carries on, and the lock died with the session.
        wire = await connect(nursery, server)
        await login(wire)
        await wire.expect(replies.logged_in(1, len(FIRST)))
        wire.send(b"QUIT\r\n")
    assert "the spool went away" in caplog.text
    assert events_of(backend, MailboxReset) == []


async def test_shutdown_lets_update_finish_and_closes_idle_sessions(backend: MemoryPop3Backend):
    server = make_server(backend)
    gate = trio.Event()
    async with trio.open_nursery() as nursery:
        idle = await connect(nursery, server, "127.0.0.1:40001")
        await login(idle, "ana", "hola")
        await idle.expect(replies.logged_in(0, 0))
        idle.send(b"DELE 1\r\n")  # a no-such-message, so nothing to delete anyway
        await idle.expect(replies.NO_SUCH_MESSAGE)
        quitting = await connect(nursery, server)
        await login(quitting)
        await quitting.expect(replies.logged_in(2, len(FIRST) + len(SECOND)))
        backend.append_gate = gate
        quitting.send(b"DELE 1\r\nQUIT\r\n")
        await quitting.expect(replies.deleted(1))
        await trio.testing.wait_all_tasks_blocked()

        nursery.start_soon(server.shutdown, 30.0)
        await idle.expect(replies.SHUTTING_DOWN)
        await idle.expect_closed()
        late = Wire()
        await server.handle(late.server_side, "127.0.0.1:40002")
        await late.expect(replies.SHUTTING_DOWN)
        assert quitting.nothing_sent()
        gate.set()
        await quitting.expect(replies.bye_removed(1))
        await quitting.expect_closed()
    assert events_of(backend, MailboxReset) == [
        MailboxReset(account="jjordan", removed=(1,), peer=PEER)
    ]


async def test_shutdown_in_transaction_deletes_nothing(backend: MemoryPop3Backend):
    server = make_server(backend)
    async with trio.open_nursery() as nursery:
        wire = await logged_in_as_jjordan(nursery, server)
        wire.send(b"DELE 1\r\n")
        await wire.expect(replies.deleted(1))
        await server.shutdown(5.0)
        await wire.expect(replies.SHUTTING_DOWN)
        await wire.expect_closed()
    assert events_of(backend, MailboxReset) == []


@pytest.mark.parametrize(
    ("peer", "policy", "allowed"),
    [
        ("127.0.0.1:1", "loopback", True),
        ("127.8.9.10:1", "loopback", True),
        ("[::1]:1", "loopback", True),
        ("[::ffff:127.0.0.1]:1", "loopback", True),
        ("192.0.2.7:1", "loopback", False),
        ("[2001:db8::1]:1", "loopback", False),
        ("192.0.2.7:1", "always", True),
        ("127.0.0.1:1", "never", False),
    ],
)
async def test_plaintext_policy(peer: str, policy: str, allowed: bool):
    backend = MemoryPop3Backend({"jjordan": "secret"})
    server = make_server(backend, plaintext_auth=policy)
    async with trio.open_nursery() as nursery:
        wire = await connect(nursery, server, peer)
        wire.send(b"CAPA\r\nUSER jjordan\r\nQUIT\r\n")
        if allowed:
            await wire.expect(replies.CAPABILITIES + replies.USER_ACCEPTED + replies.BYE)
        else:
            await wire.expect(
                replies.CAPABILITIES_NO_USER + replies.PLAINTEXT_DISABLED + replies.BYE
            )


def test_unknown_plaintext_policy_is_refused():
    with pytest.raises(ValueError, match="plaintext_auth"):
        make_server(MemoryPop3Backend(), plaintext_auth="sometimes")


def test_peer_parsing():
    assert peer_host("127.0.0.1:110") == "127.0.0.1"
    assert peer_host("[::1]:110") == "::1"
    assert is_loopback("::1") and is_loopback("127.1.2.3")
    assert not is_loopback("10.0.0.1") and not is_loopback("not an address")


class StuckProjection(MemoryPop3Backend):
    async def open_mailbox(self, account: str) -> list[MailboxMessage]:
        if account == "jjordan":
            await trio.sleep_forever()
        raise OSError("spool index unreadable")


async def test_login_gives_up_on_a_stuck_or_broken_projection(
    autojump_clock: trio.testing.MockClock,
):
    backend = StuckProjection({"jjordan": "secret", "ana": "hola"})
    server = make_server(backend)
    async with trio.open_nursery() as nursery:
        wire = await connect(nursery, server)
        start = trio.current_time()
        await login(wire)
        await wire.expect(replies.MAILBOX_UNAVAILABLE)
        assert trio.current_time() - start == pytest.approx(OPEN_MAILBOX_TIMEOUT)
        assert server.locked == set()  # the lock is not held by a session that got -ERR
        await login(wire, "ana", "hola")
        await wire.expect(replies.MAILBOX_UNAVAILABLE)
        wire.send(b"QUIT\r\n")
        await wire.expect(replies.BYE)
    assert server.locked == set()
