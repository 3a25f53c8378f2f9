"""`eventmail serve` as an operator runs it: start-up, errors, shutdown, live accounts."""

from __future__ import annotations

import signal
import smtplib
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.serverproc import add_account, eventmail_command, running_server, smtp_send

MESSAGE = b"From: ana@localhost\r\nSubject: hello\r\n\r\nHello.\r\n"


def run_serve(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        eventmail_command("serve", "--data", str(data), *args),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_serve(tmp_path, "--smtp", f"127.0.0.1:{port}", "--pop3", "127.0.0.1:0")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "address in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_listen_address_is_a_usage_error(tmp_path: Path) -> None:
    result = run_serve(tmp_path, "--smtp", "127.0.0.1:99999")
    assert result.returncode == 2
    assert "invalid address" in result.stderr


def test_second_server_on_the_same_data_directory_is_refused(tmp_path: Path) -> None:
    with running_server(tmp_path):
        result = run_serve(tmp_path, "--smtp", "127.0.0.1:0", "--pop3", "127.0.0.1:0")
    assert result.returncode == 1
    assert "in use by eventmail serve" in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_shuts_down_promptly_and_cleanly(tmp_path: Path, sig: int) -> None:
    with running_server(tmp_path) as server:
        started = time.monotonic()
        assert server.stop(sig) == 0
        assert time.monotonic() - started < 15
        assert not any("Traceback" in line for line in server.output)


def test_account_created_while_running_receives_mail(tmp_path: Path) -> None:
    add_account(tmp_path, "ana", "secret")
    with running_server(tmp_path) as server:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp_send(server.smtp_port, "ana@localhost", ["newbie@localhost"], MESSAGE)
        add_account(tmp_path, "newbie", "secret")
        # The server notices another process's append within a second.
        deadline = time.monotonic() + 5
        while True:
            try:
                smtp_send(server.smtp_port, "ana@localhost", ["newbie@localhost"], MESSAGE)
                break
            except smtplib.SMTPRecipientsRefused:
                assert time.monotonic() < deadline, "new account not noticed"
                time.sleep(0.1)
    spool = (tmp_path / "spool" / "newbie.TXT").read_bytes()
    assert spool.count(b"\nSubject: hello\n") == 1
