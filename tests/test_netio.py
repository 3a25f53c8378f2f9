"""The accept loop both servers share: overload is waited out, other errors are not."""

from __future__ import annotations

import errno

import pytest
import trio
import trio.testing

from eventmail.netio import accept_loop, format_peer


class FakeSocket:
    def __init__(self, peer: object) -> None:
        self.peer = peer

    def getpeername(self) -> object:
        if isinstance(self.peer, OSError):
            raise self.peer
        return self.peer


class FakeStream:
    def __init__(self, peer: object) -> None:
        self.socket = FakeSocket(peer)
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


class FakeListener:
    """Hands out scripted results of accept(), then blocks."""

    def __init__(self, script: list[object]) -> None:
        self.script = script
        self.closed = False

    async def accept(self) -> FakeStream:
        await trio.lowlevel.checkpoint()
        if not self.script:
            await trio.sleep_forever()
        item = self.script.pop(0)
        if isinstance(item, OSError):
            raise item
        assert isinstance(item, FakeStream)
        return item

    async def aclose(self) -> None:
        self.closed = True


async def test_overload_is_retried_and_gone_clients_are_skipped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gone = FakeStream(OSError(errno.ENOTCONN, "not connected"))
    ok = FakeStream(("::1", 4242, 0, 0))
    listener = FakeListener([OSError(errno.EMFILE, "too many open files"), gone, ok])
    handled: list[str] = []

    async def handle(stream: object, peer: str) -> None:
        handled.append(peer)

    async with trio.open_nursery() as connections:
        connections.start_soon(accept_loop, listener, handle, connections, "TEST")
        await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(1)
        connections.cancel_scope.cancel()
    assert handled == ["[::1]:4242"]
    assert gone.closed and listener.closed


async def test_other_accept_errors_propagate() -> None:
    listener = FakeListener([OSError(errno.EBADF, "bad file descriptor")])

    async def handle(stream: object, peer: str) -> None:
        raise AssertionError("no connection was accepted")

    with pytest.RaisesGroup(pytest.RaisesExc(OSError, match="bad file descriptor")):
        async with trio.open_nursery() as connections:
            await accept_loop(listener, handle, connections, "TEST")  # type: ignore[arg-type]
    assert listener.closed


@pytest.mark.parametrize(
    ("sockaddr", "peer"),
    [(("127.0.0.1", 25), "127.0.0.1:25"), (("::1", 25, 0, 0), "[::1]:25"), ("", "unknown")],
)
def test_format_peer(sockaddr: object, peer: str) -> None:
    assert format_peer(sockaddr) == peer
