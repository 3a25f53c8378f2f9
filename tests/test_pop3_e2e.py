"""POP3 end to end with real clients: poplib and curl against an in-process server on a
loopback socket, then poplib and fetchmail against a real ``eventmail serve``."""

from __future__ import annotations

import getpass
import json
import mailbox
import os
import poplib
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from eventmail.config import Pop3Config
from eventmail.events import MailboxFetched
from eventmail.pop3.memory import MemoryPop3Backend
from eventmail.pop3.server import Pop3Server
from tests.serverproc import add_account, run_cli, running_server, smtp_send

FIRST = b"From: ana@localhost\r\nSubject: first\r\n\r\nline one\r\n.a dotted line\r\n..\r\n"
SECOND = b"From: ana@localhost\r\nSubject: second\r\n\r\nsecond body\r\n"


@asynccontextmanager
async def in_process_server(
    backend: MemoryPop3Backend, config: Pop3Config | None = None
) -> AsyncIterator[int]:
    """A Pop3Server on 127.0.0.1 port 0 in this process; yields the port."""
    server = Pop3Server(config or Pop3Config(), backend=backend, hostname="mail.test")
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, listeners)
        yield port
        await server.shutdown(5.0)


def poplib_session(port: int, user: str, password: str) -> dict[str, object]:
    """A whole poplib session: list, read, delete message 1, quit."""
    client = poplib.POP3("127.0.0.1", port, timeout=30)
    try:
        result: dict[str, object] = {"welcome": client.getwelcome()}
        result["capa"] = client.capa()
        client.user(user)
        client.pass_(password)
        result["stat"] = client.stat()
        result["list"] = client.list()[1]
        result["uidl"] = client.uidl()[1]
        result["retr"] = client.retr(1)[1]
        result["top"] = client.top(2, 0)[1]
        result["dele"] = client.dele(1)
        result["quit"] = client.quit()
        return result
    finally:
        client.close()


async def test_poplib_against_the_in_process_server() -> None:
    backend = MemoryPop3Backend({"jjordan": "secret"})
    first = backend.deliver("jjordan", FIRST)
    second = backend.deliver("jjordan", SECOND)
    async with in_process_server(backend) as port:
        result = await trio.to_thread.run_sync(poplib_session, port, "jjordan", "secret")
    assert result["welcome"] == b"+OK mail.test eventmail POP3 server ready"
    assert set(result["capa"]) >= {"TOP", "UIDL", "USER", "PIPELINING", "RESP-CODES"}
    assert result["stat"] == (2, len(FIRST) + len(SECOND))
    assert result["list"] == [f"1 {first.octets}".encode(), f"2 {second.octets}".encode()]
    assert result["uidl"] == [f"1 {first.uidl}".encode(), f"2 {second.uidl}".encode()]
    assert b"\r\n".join(result["retr"]) + b"\r\n" == FIRST  # poplib undoes the stuffing
    assert result["top"] == [b"From: ana@localhost", b"Subject: second", b""]
    assert result["quit"].startswith(b"+OK")
    kinds = [type(e).__name__ for e in backend.events()]
    assert kinds[2:] == ["MailboxFetched", "MailboxFetched", "MailboxReset"]
    assert [m.seq for m in await backend.open_mailbox("jjordan")] == [second.seq]


async def test_poplib_sees_the_same_error_for_unknown_user_and_bad_password() -> None:
    backend = MemoryPop3Backend({"jjordan": "secret"})

    def attempt(user: str, password: str) -> str:
        client = poplib.POP3("127.0.0.1", port, timeout=30)
        try:
            client.user(user)
            with pytest.raises(poplib.error_proto) as failure:
                client.pass_(password)
            client.quit()
            return str(failure.value)
        finally:
            client.close()

    fast = Pop3Config(login_delay_base=0.01, login_delay_max=0.01)  # real clock here
    async with in_process_server(backend, fast) as port:
        unknown = await trio.to_thread.run_sync(attempt, "nobody", "secret")
        wrong = await trio.to_thread.run_sync(attempt, "jjordan", "nope")
    assert unknown == wrong == str(b"-ERR [AUTH] invalid user name or password")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_retrieves_a_message() -> None:
    backend = MemoryPop3Backend({"jjordan": "secret"})
    backend.deliver("jjordan", FIRST)
    backend.deliver("jjordan", SECOND)
    async with in_process_server(backend) as port:
        url = f"pop3://jjordan:secret@127.0.0.1:{port}"
        listing = await trio.run_process(["curl", "-sS", f"{url}/"], capture_stdout=True)
        message = await trio.run_process(["curl", "-sS", f"{url}/1"], capture_stdout=True)
    assert listing.stdout == f"1 {len(FIRST)}\r\n2 {len(SECOND)}\r\n".encode()
    assert message.stdout == FIRST
    fetched = [e for e in backend.events() if isinstance(e, MailboxFetched)]
    assert [(e.message_seq, e.command) for e in fetched] == [(1, "RETR")]


# --- against a real `eventmail serve` -------------------------------------------------


def serve_session(port: int) -> dict[str, object]:
    client = poplib.POP3("127.0.0.1", port, timeout=30)
    try:
        client.user("jjordan")
        client.pass_("secret")
        result: dict[str, object] = {"stat": client.stat(), "uidl": client.uidl()[1]}
        result["retr"] = [client.retr(n)[1] for n in range(1, result["stat"][0] + 1)]
        client.dele(1)
        client.quit()
        return result
    finally:
        client.close()


@pytest.mark.slow
def test_poplib_against_eventmail_serve(tmp_path: Path) -> None:
    data = tmp_path / "data"
    add_account(data, "jjordan", "secret")
    add_account(data, "ana", "hola")
    with running_server(data) as server:
        smtp_send(server.smtp_port, "ana@localhost", ["jjordan@localhost"], FIRST)
        smtp_send(server.smtp_port, "ana@localhost", ["jjordan@localhost"], SECOND)
        first = serve_session(server.pop3_port)
        second = serve_session(server.pop3_port)
    assert first["stat"][0] == 2
    bodies = [b"\r\n".join(lines) for lines in first["retr"]]
    assert bodies[0].endswith(b"Subject: first\r\n\r\nline one\r\n.a dotted line\r\n..")
    assert bodies[1].endswith(b"Subject: second\r\n\r\nsecond body")
    assert second["stat"][0] == 1  # message 1 was deleted by the first session's QUIT
    assert second["uidl"] == [b"1 " + first["uidl"][1].split()[1]]  # stable UIDL
    log = run_cli("log", "--json", data=data).stdout.splitlines()
    types = [json.loads(line)["type"] for line in log]
    assert types.count("MailboxFetched") == 3
    assert types.count("MailboxReset") == 2


FETCHMAILRC = """\
set no bouncemail
poll 127.0.0.1 with protocol POP3 port {port} uidl
    user "jjordan" there with password "secret" is "{local}" here
    sslproto '' no keep fetchall
    mda "{mda}"
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("fetchmail") is None, reason="fetchmail is not installed")
def test_fetchmail_downloads_and_deletes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    add_account(data, "jjordan", "secret")
    add_account(data, "ana", "hola")
    mbox_path = tmp_path / "fetched.mbox"
    # fetchmail hands each message to the MDA on stdin; an mbox needs a From_ line first.
    mda = tmp_path / "mda.sh"
    mda.write_text(
        "#!/bin/sh\n"
        f"{{ echo 'From fetchmail Thu Jan  1 00:00:00 1970'; "
        f"sed -e 's/\\r$//' -e 's/^\\(>*From \\)/>\\1/'; echo; }} >> '{mbox_path}'\n"
    )
    mda.chmod(0o755)
    with running_server(data) as server:
        smtp_send(server.smtp_port, "ana@localhost", ["jjordan@localhost"], FIRST)
        smtp_send(server.smtp_port, "ana@localhost", ["jjordan@localhost"], SECOND)
        rcfile = tmp_path / "fetchmailrc"
        rcfile.write_text(
            FETCHMAILRC.format(port=server.pop3_port, local=getpass.getuser(), mda=mda)
        )
        rcfile.chmod(0o600)
        env = {**os.environ, "HOME": str(tmp_path), "FETCHMAILHOME": str(tmp_path)}
        result = subprocess.run(
            ["fetchmail", "-f", str(rcfile), "--nosyslog", "-v"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        again = subprocess.run(
            ["fetchmail", "-f", str(rcfile), "--nosyslog"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert again.returncode == 1, again.stdout + again.stderr  # 1: no new mail
    box = mailbox.mbox(mbox_path)
    subjects = [message["Subject"] for message in box]
    assert subjects == ["first", "second"]
    assert box[0].get_payload() == "line one\n.a dotted line\n..\n"
    events = [json.loads(line) for line in run_cli("log", "--json", data=data).stdout.splitlines()]
    resets = [e for e in events if e["type"] == "MailboxReset"]
    assert [len(e["payload"]["removed"]) for e in resets] == [2]
    assert not (data / "spool" / "jjordan.TXT").read_bytes()
