"""The whole story, against a real ``eventmail serve``.

ana writes to jjordan in Spanish over SMTP; the message lands in jjordan.TXT;
jjordan fetches and deletes it over POP3; the log tells it in order; the spool is
empty again; and a replay up to just before the deletion brings the message back.
"""

from __future__ import annotations

import json
import mailbox
import poplib
import smtplib
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.serverproc import add_account, run_cli, running_server

TEXT = "Hola Jordán, ¿Qué tal estás? Yo bien"


def letter() -> bytes:
    message = EmailMessage()
    message["From"] = "ana@localhost"
    message["To"] = "jjordan@localhost"
    message["Subject"] = "Hola"
    message.set_content(TEXT, charset="utf-8", cte="8bit")
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))


def body_text(message: mailbox.mboxMessage) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode("utf-8")


def events(data: Path) -> list[dict]:
    return [json.loads(line) for line in run_cli("log", "--json", data=data).stdout.splitlines()]


@pytest.mark.slow
def test_the_story(tmp_path: Path) -> None:
    data = tmp_path / "data"
    add_account(data, "jjordan", "jordan-pw")
    add_account(data, "ana", "ana-pw")
    spool = data / "spool" / "jjordan.TXT"

    with running_server(data) as server:
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as smtp:
            smtp.ehlo("ana.example")
            assert smtp.has_extn("8bitmime")
            refused = smtp.sendmail(
                "ana@localhost", ["jjordan@localhost"], letter(), mail_options=["BODY=8BITMIME"]
            )
            assert refused == {}

        pop = poplib.POP3("127.0.0.1", server.pop3_port, timeout=30)
        try:
            pop.user("jjordan")
            pop.pass_("jordan-pw")  # login waits for the projector: the spool is up to date
            (stored,) = list(mailbox.mbox(spool))
            assert body_text(stored).strip() == TEXT
            assert stored["Return-Path"] == "<ana@localhost>"
            count, _ = pop.stat()
            assert count == 1
            lines = pop.retr(1)[1]
            assert TEXT.encode("utf-8") in lines
            pop.dele(1)
            assert pop.quit().startswith(b"+OK")
        finally:
            pop.close()
    # serve brings the spools up to date with every committed event before it exits

    story = [e for e in events(data) if e["type"].startswith(("Message", "Mailbox"))]
    assert [e["type"] for e in story] == ["MessageAccepted", "MailboxFetched", "MailboxReset"]
    accepted, fetched, reset = story
    assert accepted["accounts"] == ["jjordan"]
    assert fetched["payload"]["message_seq"] == accepted["seq"]
    assert fetched["payload"]["command"] == "RETR"
    assert reset["payload"]["removed"] == [accepted["seq"]]
    assert spool.read_bytes() == b""

    replayed = tmp_path / "before-reset"
    run_cli("replay", "--into", str(replayed), "--until", str(reset["seq"] - 1), data=data)
    (again,) = list(mailbox.mbox(replayed / "jjordan.TXT"))
    assert body_text(again).strip() == TEXT
    assert spool.read_bytes() == b""  # the live spool was not touched
