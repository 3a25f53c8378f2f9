"""The POP3 shell's socket fast path, on real connected socket pairs."""

from __future__ import annotations

import socket
import struct

import pytest
import trio
import trio.testing

from eventmail.pop3.rawio import FAIRNESS, SocketIO


def socket_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    left, right = trio.socket.socketpair()
    return trio.SocketStream(left), trio.SocketStream(right)


async def test_a_reply_bigger_than_the_socket_buffer_arrives_whole_and_in_order():
    ours, theirs = socket_pair()
    wire = SocketIO(ours)
    payload = bytes(range(256)) * 16384  # 4 MiB: the kernel takes it in many writes
    received = bytearray()

    async def slow_reader() -> None:
        while len(received) < len(payload):
            received.extend(await theirs.receive_some(65536))
            await trio.sleep(0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(slow_reader)
        await wire.send_all(payload)
    assert received == payload


async def test_receive_waits_for_data_and_reports_end_of_file():
    ours, theirs = socket_pair()
    wire = SocketIO(ours)
    async with trio.open_nursery() as nursery:

        async def later() -> None:
            await trio.testing.wait_all_tasks_blocked()
            await theirs.send_all(b"NOOP\r\n")
            await theirs.send_eof()

        nursery.start_soon(later)
        assert await wire.receive_some(100) == b"NOOP\r\n"
    assert await wire.receive_some(100) == b""


async def test_after_a_wait_the_next_receive_still_gets_data_already_there():
    ours, theirs = socket_pair()
    wire = SocketIO(ours)
    async with trio.open_nursery() as nursery:

        async def later() -> None:
            await trio.testing.wait_all_tasks_blocked()
            await theirs.send_all(b"RETR 1\r\n")

        nursery.start_soon(later)
        assert await wire.receive_some(100) == b"RETR 1\r\n"  # this one waited
    await theirs.send_all(b"RETR 2\r\nRETR 3\r\n")
    assert await wire.receive_some(100) == b"RETR 2\r\nRETR 3\r\n"
    # A read that filled the buffer: the rest is read at once.
    await theirs.send_all(b"x" * 150)
    assert await wire.receive_some(100) == b"x" * 100
    assert await wire.receive_some(100) == b"x" * 50


async def test_a_client_that_never_pauses_cannot_starve_other_tasks():
    ours, theirs = socket_pair()
    wire = SocketIO(ours)
    await theirs.send_all(b"x" * (FAIRNESS * 4))
    others_ran = 0

    async def other() -> None:
        nonlocal others_ran
        while True:
            others_ran += 1
            await trio.sleep(0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        await trio.sleep(0)
        before = others_ran
        for _ in range(FAIRNESS * 4):  # every byte is there already: no read has to wait
            assert await wire.receive_some(1) == b"x"
        assert others_ran > before
        nursery.cancel_scope.cancel()


async def test_a_reset_connection_is_a_broken_resource():
    ours, theirs = socket_pair()
    wire = SocketIO(ours)
    abort_on_close = struct.pack("ii", 1, 0)  # SO_LINGER with a zero timeout: RST, not FIN
    theirs.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, abort_on_close)
    await theirs.aclose()
    with pytest.raises(trio.BrokenResourceError):
        for _ in range(3):  # the first write may still be accepted
            await wire.send_all(b"+OK\r\n" * 1000)


async def test_closing_the_stream_wakes_a_waiting_receive():
    ours, _theirs = socket_pair()
    wire = SocketIO(ours)
    async with trio.open_nursery() as nursery:

        async def close_soon() -> None:
            await trio.testing.wait_all_tasks_blocked()
            await ours.aclose()

        nursery.start_soon(close_soon)
        with pytest.raises(trio.ClosedResourceError):
            await wire.receive_some(100)
