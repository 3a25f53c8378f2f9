#!/usr/bin/env python3
"""POP3 retrieval benchmark: eventmail against Dovecot, driven by the same poplib client.

One session per round: log in, LIST, then RETR every message (no DELE), QUIT. The
timed part is LIST + all RETRs; the result is messages per second (best of the
rounds, plus the median).

eventmail runs as a real ``eventmail serve`` subprocess on a temporary data
directory. The messages are appended to its event log as MessageAccepted events
before it starts, and its projector builds the spool at start-up. Every RETR
queues a MailboxFetched event with the group committer before the message is
sent, as in production; the reply does not wait for that commit, but the session
waits for all of them before it ends. After the run the log is checked to hold
one MailboxFetched per RETR.

Dovecot (Debian ``dovecot-pop3d``; installed with apt-get when missing and running
as root) serves an mbox that is a copy of eventmail's spool, so both servers send
the same bytes. It runs from a minimal configuration in the temporary directory
(``dovecot -c CONF -F``) on a free loopback port, and is stopped afterwards.

Usage: python tools/bench_pop3.py [--messages 2000] [--size 4096] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import poplib
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eventmail.events import MailboxFetched, MessageAccepted, Recipient  # noqa: E402
from eventmail.store import Append, SQLiteLog  # noqa: E402

USER = "bench"
PASSWORD = "bench-password"
LISTENING = re.compile(r"POP3 listening on \[?([^\]]+?)\]?:(\d+)$")


def make_messages(count: int, size: int) -> list[bytes]:
    """``count`` distinct messages of exactly ``size`` octets, CRLF line endings."""
    messages = []
    for n in range(1, count + 1):
        head = (
            f"From: sender{n % 7}@example.org\r\n"
            f"To: {USER}@localhost\r\n"
            f"Subject: benchmark message {n}\r\n"
            f"Message-ID: <{n}.bench@example.org>\r\n\r\n"
        ).encode()
        line = (f"{n:06d} " + "lorem ipsum dolor sit amet " * 3)[:70].encode() + b"\r\n"
        body = line * ((size - len(head)) // len(line) + 1)
        message = (head + body)[: size - 2] + b"\r\n"
        messages.append(message)
    return messages


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def retrieve_all(port: int, password: str, count: int) -> float:
    """One session: LIST + RETR 1..count; return the seconds the LIST and RETRs took."""
    client = poplib.POP3("127.0.0.1", port, timeout=120)
    try:
        client.user(USER)
        client.pass_(password)
        start = time.perf_counter()
        listing = client.list()[1]
        octets = 0
        for number in range(1, len(listing) + 1):
            octets += client.retr(number)[2]
        elapsed = time.perf_counter() - start
        client.quit()
    finally:
        client.close()
    if len(listing) != count:
        raise SystemExit(
            f"expected {count} messages on port {port}, the server listed {len(listing)}"
        )
    return elapsed


def measure(name: str, port: int, password: str, count: int, rounds: int) -> list[float]:
    rates = []
    for round_number in range(1, rounds + 1):
        elapsed = retrieve_all(port, password, count)
        rates.append(count / elapsed)
        print(
            f"  {name} round {round_number}: {count} messages in {elapsed:.3f} s "
            f"= {count / elapsed:,.0f} messages/s",
            flush=True,
        )
    return rates


# --- eventmail ------------------------------------------------------------------------


def eventmail(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventmail", *args],
        input=input,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )


def inject(data: Path, messages: list[bytes]) -> None:
    log = SQLiteLog(data / "events.db")
    try:
        batch = []
        for n, message in enumerate(messages, 1):
            event = MessageAccepted(
                message_id=f"BENCH{n}",
                mail_from=f"sender{n % 7}@example.org",
                recipients=(Recipient(account=USER, address=f"{USER}@localhost"),),
                peer="127.0.0.1:0",
                helo="bench",
                size=len(message),
                sha256=hashlib.sha256(message).hexdigest(),
            )
            batch.append(Append(event, message))
            if len(batch) == 500:
                log.append(batch)
                batch = []
        if batch:
            log.append(batch)
    finally:
        log.close()


def commit_latency(data: Path, count: int = 500) -> float:
    """Seconds per durable one-event append to a log on the same disk (for context)."""
    log = SQLiteLog(data / "latency.db")
    event = MailboxFetched(account=USER, message_seq=1, uidl="1.x", command="RETR", peer="-")
    try:
        start = time.perf_counter()
        for _ in range(count):
            log.append([Append(event)])
        return (time.perf_counter() - start) / count
    finally:
        log.close()


def count_fetches(data: Path) -> int:
    log = SQLiteLog(data / "events.db")
    try:
        return sum(1 for _ in log.read_after(0, types=["MailboxFetched"]))
    finally:
        log.close()


@contextmanager
def eventmail_server(data: Path) -> Iterator[int]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "eventmail",
            "serve",
            "--data",
            str(data),
            "--smtp",
            "127.0.0.1:0",
            "--pop3",
            "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    port = 0
    output = []
    for line in process.stdout:
        output.append(line)
        if match := LISTENING.search(line.rstrip("\n")):
            port = int(match[2])
        if "eventmail: ready" in line:
            break
    if not port or process.poll() is not None:
        process.kill()
        raise SystemExit("eventmail serve did not start:\n" + "".join(output))
    threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
    try:
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- Dovecot ----------------------------------------------------------------------------

DOVECOT_CONF = """\
protocols = pop3
listen = 127.0.0.1
base_dir = {tmp}/run
state_dir = {tmp}/state
log_path = {tmp}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = {uid}
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={tmp}/home
}}
mail_location = mbox:{tmp}/mail:INBOX={tmp}/mail/inbox
pop3_uidl_format = %08Xu%08Xv
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {port}
  }}
}}
"""


def ensure_dovecot() -> str:
    binary = shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None
    )
    if binary and Path("/usr/lib/dovecot/pop3").exists():
        return binary
    if os.geteuid() != 0:
        raise SystemExit("Dovecot is missing: run `sudo apt-get install dovecot-pop3d` first")
    print("installing dovecot-pop3d with apt-get ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "dovecot-pop3d"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return shutil.which("dovecot") or "/usr/sbin/dovecot"


@contextmanager
def dovecot_server(tmp: Path, mbox: bytes) -> Iterator[int]:
    binary = ensure_dovecot()
    if os.geteuid() != 0:
        raise SystemExit("Dovecot must be started as root (it drops privileges itself)")
    owner = pwd.getpwnam("nobody")  # mail is never accessed as root
    (tmp / "mail").mkdir(parents=True)
    (tmp / "home").mkdir()
    (tmp / "mail" / "inbox").write_bytes(mbox)
    for path in (tmp / "mail", tmp / "mail" / "inbox", tmp / "home"):
        os.chown(path, owner.pw_uid, owner.pw_gid)
    port = free_port()
    conf = tmp / "dovecot.conf"
    conf.write_text(
        DOVECOT_CONF.format(
            tmp=tmp,
            port=port,
            password=PASSWORD,
            uid=owner.pw_uid,
            gid=owner.pw_gid,
            internal=_system_user("dovecot"),
            login=_system_user("dovenull"),
        )
    )
    for directory in (tmp.parent, tmp):  # mkdtemp makes 0700; the mail user must get through
        os.chmod(directory, 0o755)
    process = subprocess.Popen(
        [binary, "-c", str(conf), "-F"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_port(port, process, tmp / "dovecot.log")
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _system_user(name: str) -> str:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return "nobody"
    return name


def _wait_for_port(port: int, process: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = process.stderr.read() if process.stderr else ""
            logged = log.read_text() if log.exists() else ""
            raise SystemExit(f"dovecot exited ({process.returncode}):\n{stderr}{logged}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                if probe.recv(100).startswith(b"+OK"):
                    return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("dovecot did not start listening in 30 s")


# --- main ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--size", type=int, default=4096, help="octets per message")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-dovecot", action="store_true")
    options = parser.parse_args()

    messages = make_messages(options.messages, options.size)
    with tempfile.TemporaryDirectory(prefix="bench-pop3-") as scratch:
        tmp = Path(scratch)
        data = tmp / "eventmail"
        eventmail(
            "accounts", "add", "--data", str(data), "--password-stdin", USER, input=PASSWORD + "\n"
        )
        inject(data, messages)
        print(
            f"{options.messages} messages of {options.size} octets; "
            f"LIST + RETR all in one session, best of {options.rounds} rounds",
            flush=True,
        )
        with eventmail_server(data) as port:
            ours = measure("eventmail", port, PASSWORD, options.messages, options.rounds)
        recorded = count_fetches(data)
        if recorded != options.messages * options.rounds:
            raise SystemExit(
                f"the log holds {recorded} MailboxFetched events, "
                f"expected {options.messages * options.rounds}"
            )
        spool = (data / "spool" / f"{USER}.TXT").read_bytes()
        theirs: list[float] = []
        if not options.skip_dovecot:
            with dovecot_server(tmp / "dovecot", spool) as port:
                theirs = measure("dovecot", port, PASSWORD, options.messages, options.rounds)

        latency = commit_latency(tmp)
    print()
    print(
        f"every RETR recorded: {recorded:,} MailboxFetched events; one durable one-event "
        f"append takes {latency * 1000:.3f} ms here (RETR queues its record, does not wait)"
    )
    print(f"eventmail: {max(ours):10,.0f} messages/s (median {statistics.median(ours):,.0f})")
    if theirs:
        print(
            f"dovecot:   {max(theirs):10,.0f} messages/s (median {statistics.median(theirs):,.0f})"
        )
        print(f"ratio:     {max(ours) / max(theirs):10.2f}x Dovecot (target >= 0.70x)")


if __name__ == "__main__":
    main()
