"""What both servers need from the network: accepting connections and naming peers."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
from collections.abc import Awaitable, Callable

import trio

log = logging.getLogger("eventmail")

# accept() errors that mean "out of resources for now": wait and retry, as trio does.
OVERLOAD_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
ACCEPT_RETRY_DELAY = 0.1  # seconds

Handler = Callable[[trio.SocketStream, str], Awaitable[None]]


def format_peer(sockaddr: object) -> str:
    """``ip:port``, or ``[ip]:port`` for IPv6."""
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        host, port = str(sockaddr[0]), sockaddr[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(sockaddr) or "unknown"


def peer_host(peer: str) -> str:
    """The address part of ``ip:port`` or ``[ipv6]:port``."""
    if peer.startswith("["):
        return peer[1:].partition("]")[0]
    host, sep, _ = peer.rpartition(":")
    return host if sep else peer


def is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


async def accept_loop(
    listener: trio.SocketListener, handle: Handler, connections: trio.Nursery, what: str
) -> None:
    """Accept until cancelled, running ``handle(stream, peer)`` in ``connections``.

    Running out of file descriptors or memory is waited out, not fatal. The
    listener is closed when the loop ends.
    """
    try:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in OVERLOAD_ERRNOS:
                    raise
                log.warning("%s accept failed (%s); retrying", what, errno.errorcode[exc.errno])
                await trio.sleep(ACCEPT_RETRY_DELAY)
                continue
            try:
                peer = format_peer(stream.socket.getpeername())
            except OSError:  # the client already went away
                await trio.aclose_forcefully(stream)
                continue
            connections.start_soon(handle, stream, peer)
    finally:
        await trio.aclose_forcefully(listener)


async def send_last_words(stream: trio.abc.Stream, data: bytes, timeout: float) -> None:
    """A last reply to a client that may be gone or not reading: never raises, never hangs."""
    with (
        trio.move_on_after(timeout),
        contextlib.suppress(
            trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError
        ),
    ):
        await stream.send_all(data)
