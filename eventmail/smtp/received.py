"""The ``Received:`` trace header the server prepends (RFC 5321 4.4). Pure.

The shell supplies the message id and the date, so this stays a function of its
arguments.
"""

from __future__ import annotations

import email.utils
import ipaddress
import re
from datetime import datetime

from eventmail.netio import peer_host

_UNSAFE = re.compile(r"[\x00-\x20\x7f();\\]")


def address_literal(host: str) -> str:
    """``[192.0.2.1]`` or ``[IPv6:2001:db8::1]``; a non-IP host is kept in brackets."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return f"[{host}]"
    return f"[IPv6:{ip.compressed}]" if ip.version == 6 else f"[{ip}]"


def received_header(
    *,
    helo: str,
    peer: str,
    hostname: str,
    protocol: str,
    message_id: str,
    recipient: str | None,
    date: datetime,
) -> bytes:
    """The header, folded, CRLF endings; ``recipient`` only when there is exactly one."""
    client = _UNSAFE.sub("_", helo) or "unknown"
    lines = [
        f"Received: from {client} ({address_literal(peer_host(peer))})",
        f"\tby {hostname} (eventmail) with {protocol} id {message_id}",
    ]
    stamp = email.utils.format_datetime(date)
    if recipient is not None:
        lines.append(f"\tfor <{recipient}>; {stamp}")
    else:
        lines[-1] += ";"
        lines.append(f"\t{stamp}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")
