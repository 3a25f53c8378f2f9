"""End to end on loopback: real clients (smtplib, curl, swaks) against real sockets.

Most tests run ``SmtpServer`` in-process on port 0 with a SQLite log in tmp_path;
the last ones drive the real ``eventmail serve`` subprocess.
"""

from __future__ import annotations

import shutil
import smtplib
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from eventmail.config import SmtpConfig
from eventmail.events import MessageAccepted, RecipientRefused
from eventmail.smtp import replies
from eventmail.smtp.server import SmtpServer
from eventmail.store import SQLiteLog
from eventmail.store.committer import GroupCommitter
from tests.serverproc import add_account, running_server

ACCOUNTS = {"bob", "carol"}
HANG_GUARD = 60  # seconds; only stops a hung client from hanging the suite
MESSAGE = b"From: ana@example.org\r\nSubject: e2e\r\n\r\nline one\r\n.starts with a dot\r\n"


class Live:
    def __init__(self, port: int, log: SQLiteLog) -> None:
        self.port = port
        self.log = log

    def accepted(self) -> list[tuple[MessageAccepted, bytes]]:
        found = []
        for record in self.log.read_after(0):
            event = record.event
            if isinstance(event, MessageAccepted):
                assert record.message is not None
                found.append((event, record.message))
        return found

    async def in_thread(self, func: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(func, *args)


@asynccontextmanager
async def live_server(tmp_path: Path, **changes: object) -> AsyncIterator[Live]:
    log = SQLiteLog(tmp_path / "events.db")
    committer = GroupCommitter(log)
    server = SmtpServer(
        SmtpConfig(**changes),  # type: ignore[arg-type]
        domains=["localhost"],
        hostname="mx.test",
        is_local_account=lambda name: name in ACCOUNTS,
        append=committer.append,
    )
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    try:
        with trio.fail_after(HANG_GUARD):
            async with trio.open_nursery() as nursery:
                await nursery.start(committer.run)
                await nursery.start(server.serve, listeners)
                yield Live(port, log)
                await server.shutdown(1.0)
                nursery.cancel_scope.cancel()
    finally:
        log.close()


def smtplib_send(port: int, sender: str, rcpts: list[str], message: bytes, **kw: Any) -> dict:
    with smtplib.SMTP("127.0.0.1", port, timeout=HANG_GUARD) as client:
        return client.sendmail(sender, rcpts, message, **kw)


async def test_smtplib_delivers_to_local_accounts(tmp_path: Path) -> None:
    async with live_server(tmp_path) as live:
        refused = await live.in_thread(
            smtplib_send,
            live.port,
            "ana@example.org",
            ["bob@localhost", "Carol@LOCALHOST", "nobody@localhost", "postmaster"],
            MESSAGE,
        )
        assert refused == {"nobody@localhost": (550, b"5.1.1 No such mailbox here")}
        ((event, stored),) = live.accepted()
    assert [r.account for r in event.recipients] == ["bob", "carol", "postmaster"]
    assert stored.endswith(b"\r\n" + MESSAGE)
    assert stored.startswith(b"Received: from ")
    assert event.peer.startswith("127.0.0.1:")
    assert event.mail_params == {"SIZE": str(len(MESSAGE))}


async def test_smtplib_relay_is_denied(tmp_path: Path) -> None:
    async with live_server(tmp_path) as live:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
            await live.in_thread(
                smtplib_send, live.port, "ana@example.org", ["bob@elsewhere.example"], MESSAGE
            )
        code, text = info.value.recipients["bob@elsewhere.example"]
        assert f"{code} {text.decode()}" == replies.RELAY_DENIED.text
        assert live.accepted() == []
        assert [r.type for r in live.log.read_after(0)] == [RecipientRefused.__name__]


async def test_smtplib_smtputf8(tmp_path: Path) -> None:
    message = "From: jös@example.org\r\nSubject: ünïcode\r\n\r\nhëllo\r\n".encode()
    async with live_server(tmp_path) as live:
        await live.in_thread(
            lambda: smtplib_send(
                live.port, "jös@example.org", ["bob@localhost"], message, mail_options=["SMTPUTF8"]
            )
        )
        ((event, stored),) = live.accepted()
    assert event.mail_from == "jös@example.org"
    assert b"with UTF8SMTP id" in stored
    assert stored.endswith(message)


async def test_smtplib_large_message_and_size_limit(tmp_path: Path) -> None:
    big = b"Subject: big\r\n\r\n" + (b"x" * 76 + b"\r\n") * 30_000  # about 2.3 MB
    async with live_server(tmp_path, max_message_size=3_000_000) as live:
        await live.in_thread(smtplib_send, live.port, "a@b.example", ["bob@localhost"], big)
        with pytest.raises(smtplib.SMTPSenderRefused) as info:
            await live.in_thread(
                smtplib_send, live.port, "a@b.example", ["bob@localhost"], big + big
            )
        assert info.value.smtp_code == 552
        ((event, stored),) = live.accepted()
    assert stored.endswith(big)
    assert event.size == len(stored)


needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
needs_swaks = pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")


async def run_tool(*argv: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(list(argv), capture_stdout=True, capture_stderr=True, check=False)


@needs_curl
async def test_curl_uploads_a_message(tmp_path: Path) -> None:
    upload = tmp_path / "message.eml"
    upload.write_bytes(MESSAGE)
    async with live_server(tmp_path) as live:
        result = await run_tool(
            "curl", "-sS", f"smtp://127.0.0.1:{live.port}", "--mail-from", "ana@example.org",
            "--mail-rcpt", "bob@localhost", "--upload-file", str(upload),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        ((event, stored),) = live.accepted()
    assert event.helo  # curl says EHLO with some name
    assert stored.endswith(MESSAGE)


@needs_curl
async def test_curl_with_lf_endings_needs_crlf_option(tmp_path: Path) -> None:
    upload = tmp_path / "message.txt"
    upload.write_bytes(MESSAGE.replace(b"\r\n", b"\n"))
    base = [
        "curl", "-sS", "--mail-from", "ana@example.org", "--mail-rcpt", "bob@localhost",
        "--upload-file", str(upload),
    ]  # fmt: skip
    async with live_server(tmp_path) as live:
        url = f"smtp://127.0.0.1:{live.port}"
        refused = await run_tool(*base, url)
        assert refused.returncode != 0  # bare LF: refused, nothing stored
        assert live.accepted() == []
        converted = await run_tool(*base, "--crlf", url)
        assert converted.returncode == 0, converted.stderr
        ((_, stored),) = live.accepted()
    assert stored.endswith(MESSAGE)


@needs_swaks
async def test_swaks_with_pipelining(tmp_path: Path) -> None:
    async with live_server(tmp_path) as live:
        result = await run_tool(
            "swaks", "--server", "127.0.0.1", "--port", str(live.port), "--pipeline",
            "--from", "ana@example.org", "--to", "bob@localhost,carol@localhost",
            "--header", "Subject: swaks", "--body", "hello from swaks",
        )  # fmt: skip
        assert result.returncode == 0, result.stdout.decode()
        ((event, stored),) = live.accepted()
    transcript = result.stdout.decode()
    assert f"<-  {replies.message_accepted(event.message_id).text}" in transcript
    assert [r.account for r in event.recipients] == ["bob", "carol"]
    assert b"Subject: swaks" in stored


@needs_swaks
async def test_swaks_sees_unknown_account_refused(tmp_path: Path) -> None:
    async with live_server(tmp_path) as live:
        result = await run_tool(
            "swaks", "--server", "127.0.0.1", "--port", str(live.port),
            "--from", "ana@example.org", "--to", "nobody@localhost", "--quit-after", "RCPT",
        )  # fmt: skip
        assert result.returncode != 0
        assert replies.UNKNOWN_ACCOUNT.text in result.stdout.decode()
        assert live.accepted() == []


# --- the real `eventmail serve` ---------------------------------------------------------


def test_serve_subprocess_accepts_mail(tmp_path: Path) -> None:
    data = tmp_path / "data"
    add_account(data, "bob", "secret-password")
    with running_server(data) as server:
        refused = smtplib_send(server.smtp_port, "ana@example.org", ["bob@localhost"], MESSAGE)
        assert refused == {}
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtplib_send(server.smtp_port, "ana@example.org", ["nobody@localhost"], MESSAGE)
        swaks = shutil.which("swaks") is not None
        if swaks:
            result = subprocess.run(
                ["swaks", "--server", "127.0.0.1", "--port", str(server.smtp_port),
                 "--from", "ana@example.org", "--to", "bob@localhost", "--body", "via swaks"],
                capture_output=True, text=True, timeout=HANG_GUARD, check=False,
            )  # fmt: skip
            assert result.returncode == 0, result.stdout
    log = SQLiteLog(data / "events.db")
    try:
        accepted = [r for r in log.read_after(0) if r.type == "MessageAccepted"]
    finally:
        log.close()
    assert len(accepted) == (2 if swaks else 1)
    assert accepted[0].message is not None and accepted[0].message.endswith(MESSAGE)
