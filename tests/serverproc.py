"""Run a real ``eventmail serve`` subprocess on loopback port 0 for end-to-end tests.

The server prints the ports it actually bound, so tests never guess a free port.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

LISTENING = re.compile(r"eventmail: (SMTP|POP3) listening on \[?([^\]]+?)\]?:(\d+)$")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


@dataclass
class RunningServer:
    data: Path
    process: subprocess.Popen[str]
    smtp_port: int = 0
    pop3_port: int = 0
    output: list[str] = field(default_factory=list)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError("eventmail serve did not stop in time") from None


def eventmail_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "eventmail", *args]


def run_cli(
    *args: str, data: Path, input: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run one ``eventmail`` command against ``data`` and return its result."""
    command, *rest = args
    argv = eventmail_command(*command.split(), "--data", str(data), *rest)
    result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"{argv} failed ({result.returncode}): {result.stderr}")
    return result


def add_account(data: Path, name: str, password: str) -> None:
    run_cli("accounts add", "--password-stdin", name, data=data, input=password + "\n")


@contextmanager
def running_server(
    data: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[RunningServer]:
    """Start ``eventmail serve`` on 127.0.0.1 port 0; stop it with SIGTERM afterwards."""
    argv = eventmail_command(
        "serve", "--data", str(data), "--smtp", "127.0.0.1:0", "--pop3", "127.0.0.1:0", *extra
    )
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    server = RunningServer(data, process)
    _wait_until_ready(server)
    try:
        yield server
    finally:
        server.stop()


def _wait_until_ready(server: RunningServer) -> None:
    assert server.process.stdout is not None
    ready = threading.Event()

    def pump() -> None:
        assert server.process.stdout is not None
        for line in server.process.stdout:
            line = line.rstrip("\n")
            server.output.append(line)
            match = LISTENING.search(line)
            if match and match[1] == "SMTP":
                server.smtp_port = int(match[3])
            elif match:
                server.pop3_port = int(match[3])
            if "eventmail: ready" in line:
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(START_TIMEOUT) or server.process.poll() is not None:
        server.process.kill()
        raise AssertionError("eventmail serve did not start:\n" + "\n".join(server.output))


def smtp_send(port: int, sender: str, recipients: Sequence[str], message: bytes) -> dict:
    """Send one message with smtplib; return smtplib's refused-recipients dict."""
    import smtplib

    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        return client.sendmail(sender, list(recipients), message)
