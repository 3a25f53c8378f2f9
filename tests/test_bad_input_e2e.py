"""Bad input of every kind against a real `eventmail serve`.

Seeded random garbage (binary, NUL, non-UTF-8, overlong lines, half commands) on
both ports: every reply is a well-formed protocol reply, no traceback reaches a
client or the server's output, the server keeps serving, and the log still
verifies (no half-written event).
"""

from __future__ import annotations

import poplib
import random
import re
import socket
from pathlib import Path

import pytest

from tests.serverproc import add_account, run_cli, running_server, smtp_send

SMTP_REPLY = re.compile(rb"^[2-5]\d\d[ -]")
POP3_REPLY = re.compile(rb"^(\+OK|-ERR)")
CONNECTIONS = 12

SMTP_OPENERS = [
    b"EHLO fuzz\r\n",
    b"HELO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<ana@localhost>\r\n",
]
POP3_OPENERS = [b"", b"USER ana\r\nPASS secret\r\n", b"CAPA\r\n"]
CAPA_LINES = {
    b"TOP",
    b"UIDL",
    b"USER",
    b"RESP-CODES",
    b"PIPELINING",
    b"EXPIRE NEVER",
    b"IMPLEMENTATION eventmail",
    b".",
}


def garbage(rng: random.Random) -> bytes:
    pieces = [
        rng.randbytes(rng.randint(1, 300)),
        b"\x00" * rng.randint(1, 20),
        b"A" * rng.randint(500, 3000),
        "ÿ¿€\udcff".encode("utf-8", "surrogateescape"),
        rng.choice([b"DATA\r\n", b"RETR 1\r\n", b"TOP 1 -1\r\n", b"LIST 99999999999999999\r\n"]),
        rng.choice([b"\r\n", b"\n", b"\r", b"\r\n.\r\n", b".\n"]),
        rng.choice([b"MAIL FROM:<\xff@\x00>\r\n", b"RCPT TO:<" + b"x" * 600 + b">\r\n"]),
    ]
    rng.shuffle(pieces)
    return b"".join(pieces[: rng.randint(2, len(pieces))])


def converse(port: int, opener: bytes, payload: bytes) -> bytes:
    """Send opener + payload, half-close, and read everything the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        received = b""
        try:
            conn.sendall(opener + payload)
            conn.shutdown(socket.SHUT_WR)
            while chunk := conn.recv(65536):
                received += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass  # the server may hang up on garbage; that is a fine answer
    return received


def reply_lines(data: bytes) -> list[bytes]:
    return [line for line in data.split(b"\r\n") if line]


@pytest.mark.parametrize("seed", [20261129, 1, 2])
def test_garbage_gets_protocol_replies_and_breaks_nothing(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    add_account(tmp_path, "ana", "secret")
    errors = 0
    with running_server(tmp_path) as server:
        for i in range(CONNECTIONS):
            answer = converse(server.smtp_port, SMTP_OPENERS[i % 2], garbage(rng))
            assert answer.startswith(b"220 ")
            for line in reply_lines(answer):
                assert SMTP_REPLY.match(line), line
                errors += line.startswith(b"5")
            assert b"Traceback" not in answer

            answer = converse(server.pop3_port, POP3_OPENERS[i % 3], garbage(rng))
            assert answer.startswith(b"+OK")
            # The mailbox is empty, so the only multi-line reply is CAPA's list.
            for line in reply_lines(answer):
                assert POP3_REPLY.match(line) or line in CAPA_LINES, line
                errors += line.startswith(b"-ERR")
            assert b"Traceback" not in answer
        assert errors >= CONNECTIONS  # the garbage was read and refused, not ignored

        # Still serving, and every part still works.
        smtp_send(
            server.smtp_port, "bob@example.org", ["ana@localhost"], b"Subject: ok\r\n\r\nok\r\n"
        )
        client = poplib.POP3("127.0.0.1", server.pop3_port, timeout=20)
        try:
            client.user("ana")
            client.pass_("secret")
            count, _ = client.stat()
            assert count == 1
        finally:
            client.quit()
    assert not any("Traceback" in line for line in server.output), server.output
    verified = run_cli("verify", data=tmp_path)
    assert verified.returncode == 0
