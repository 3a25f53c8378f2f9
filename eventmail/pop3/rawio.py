"""Socket I/O for the POP3 shell's hot path, on the file descriptor of a ``trio.SocketStream``.

``SocketStream.send_all`` yields to the scheduler after every successful send,
and a ping-pong client (RETR, wait, RETR, ...) pays a scheduler round for it on
every command. Here a write that the kernel takes at once does not yield; a
read yields only while it waits for data, or every ``FAIRNESS`` immediate reads
so that a client pipelining without pause cannot starve the other sessions. After
a read that had to wait, the next one waits first instead of trying a read that
would almost surely fail.

Closing the ``SocketStream`` wakes a task waiting here (trio's ``notify_closing``
is keyed by the descriptor), so the stream stays the owner of the socket.
"""

from __future__ import annotations

import os

import trio

FAIRNESS = 16  # immediate reads in a row before a read yields anyway


class SocketIO:
    def __init__(self, stream: trio.SocketStream) -> None:
        self._fd = stream.socket.fileno()
        self._immediate = 0
        self._waited = False  # the last read had to wait for data

    async def send_all(self, data: bytes) -> None:
        fd = self._fd
        try:
            sent = os.write(fd, data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise trio.BrokenResourceError(f"send failed: {exc}") from exc
        if sent == len(data):
            return
        view = memoryview(data)
        while sent < len(data):
            await trio.lowlevel.wait_writable(fd)
            try:
                sent += os.write(fd, view[sent:])
            except BlockingIOError:
                pass
            except OSError as exc:
                raise trio.BrokenResourceError(f"send failed: {exc}") from exc

    async def receive_some(self, max_bytes: int) -> bytes:
        """The next bytes, or b"" at end of file."""
        fd = self._fd
        if not self._waited:
            try:
                data = os.read(fd, max_bytes)
            except BlockingIOError:
                pass
            except OSError as exc:
                raise trio.BrokenResourceError(f"receive failed: {exc}") from exc
            else:
                self._immediate += 1
                if self._immediate >= FAIRNESS:
                    self._immediate = 0
                    await trio.lowlevel.checkpoint()
                return data
        # Waiting first after a wait: a client that waited for its last reply is
        # unlikely to have sent the next command yet, so a read would only fail.
        self._immediate = 0
        while True:
            await trio.lowlevel.wait_readable(fd)
            try:
                data = os.read(fd, max_bytes)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise trio.BrokenResourceError(f"receive failed: {exc}") from exc
            # Data beyond one read means the client sends ahead: read before waiting next.
            self._waited = len(data) < max_bytes
            return data
