"""Crash test: kill -9 ``eventmail serve`` under SMTP load, restart it, audit the result.

    python tools/crash_test.py [--rounds 5] [--seconds 3] [--clients 4] [--data DIR]

Each round starts the server on 127.0.0.1 (port 0), runs CLIENTS smtplib
threads sending numbered messages (an ``X-Crash-Id`` header each), and kills
the server with SIGKILL after SECONDS (or once ``--acks`` messages got their
250). After the last round the server is started once more (it recovers its
projection on start) and stopped, and then:

- every message that got a 250 is in the log exactly once;
- nothing is in the log twice, acknowledged or not (a message whose 250 was
  lost in the kill may be there once);
- the spool holds exactly the messages of the log, each exactly once;
- the live spools equal a fresh ``eventmail replay --into``, byte for byte.

Exit status 0 if all hold, 1 otherwise.
"""

from __future__ import annotations

import argparse
import mailbox
import os
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eventmail.store import SQLiteLog  # noqa: E402

ACCOUNT = "crash"
LISTENING = re.compile(r"eventmail: SMTP listening on \[?([^\]]+?)\]?:(\d+)$")
CRASH_ID = re.compile(rb"^X-Crash-Id: (\S+)\r?$", re.MULTILINE)
START_TIMEOUT = 30.0


@dataclass
class Tally:
    acked: list[str] = field(default_factory=list)
    unacked: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    enough: threading.Event = field(default_factory=threading.Event)
    target: int | None = None

    def record(self, crash_id: str, ok: bool) -> None:
        with self.lock:
            (self.acked if ok else self.unacked).append(crash_id)
            if self.target is not None and len(self.acked) >= self.target:
                self.enough.set()


def eventmail(*args: str) -> list[str]:
    return [sys.executable, "-m", "eventmail", *args]


def start_server(data: Path) -> tuple[subprocess.Popen[str], int]:
    """Start ``eventmail serve`` on loopback port 0; return it and its SMTP port."""
    process = subprocess.Popen(
        eventmail("serve", "--data", str(data), "--smtp", "127.0.0.1:0", "--pop3", "127.0.0.1:0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    ready = threading.Event()
    found: dict[str, int] = {}
    output: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line.rstrip("\n"))
            match = LISTENING.search(line.rstrip("\n"))
            if match:
                found["smtp"] = int(match[2])
            if "eventmail: ready" in line:
                ready.set()
        ready.set()  # the process ended

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(START_TIMEOUT) or process.poll() is not None or "smtp" not in found:
        process.kill()
        raise SystemExit("eventmail serve did not start:\n" + "\n".join(output))
    return process, found["smtp"]


def client(port: int, name: str, tally: Tally, stop: threading.Event) -> None:
    """Send numbered messages over one connection until the server dies or stop is set."""
    number = 0
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            while not stop.is_set():
                number += 1
                crash_id = f"{name}-{number}"
                message = (
                    f"From: load@example.org\r\nTo: {ACCOUNT}@localhost\r\n"
                    f"Subject: crash test {crash_id}\r\nX-Crash-Id: {crash_id}\r\n\r\n"
                    f"message {crash_id}\r\nFrom here on, quoted.\r\n.\r\n"
                ).encode()
                try:
                    smtp.sendmail("load@example.org", [f"{ACCOUNT}@localhost"], message)
                except (smtplib.SMTPException, OSError):
                    tally.record(crash_id, ok=False)
                    return
                tally.record(crash_id, ok=True)
    except (smtplib.SMTPException, OSError):
        return


def run_round(data: Path, index: int, args: argparse.Namespace, tally: Tally) -> None:
    process, port = start_server(data)
    stop = threading.Event()
    with tally.lock:
        tally.target = None if args.acks is None else len(tally.acked) + args.acks
        tally.enough.clear()
    threads = [
        threading.Thread(target=client, args=(port, f"r{index}c{n}", tally, stop), daemon=True)
        for n in range(args.clients)
    ]
    for thread in threads:
        thread.start()
    tally.enough.wait(args.seconds)  # load runs until enough acks or the time is up
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    stop.set()
    for thread in threads:
        thread.join(60)


def log_ids(data: Path) -> Counter[str]:
    log = SQLiteLog(data / "events.db", readonly=True)
    try:
        ids: Counter[str] = Counter()
        for record in log.read_after(0, types=["MessageAccepted"]):
            match = CRASH_ID.search(record.message or b"")
            if match:
                ids[match[1].decode()] += 1
        return ids
    finally:
        log.close()


def spool_ids(path: Path) -> Counter[str]:
    ids: Counter[str] = Counter()
    if not path.exists():
        return ids
    box = mailbox.mbox(path)
    try:
        for key in box.iterkeys():
            match = CRASH_ID.search(box.get_bytes(key))
            if match:
                ids[match[1].decode()] += 1
    finally:
        box.close()
    return ids


def spool_files(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*.TXT"))
    }


def audit(data: Path, tally: Tally) -> list[str]:
    """Every broken promise, one line each (empty if all hold)."""
    problems = []
    in_log = log_ids(data)
    in_spool = spool_ids(data / "spool" / f"{ACCOUNT}.TXT")
    for crash_id in tally.acked:
        if in_log[crash_id] != 1:
            problems.append(f"{crash_id} got a 250 but is in the log {in_log[crash_id]} times")
        if in_spool[crash_id] != 1:
            problems.append(f"{crash_id} got a 250 but is in the spool {in_spool[crash_id]} times")
    problems += [f"{i} is in the log {n} times" for i, n in in_log.items() if n > 1]
    problems += [f"{i} is in the spool {n} times" for i, n in in_spool.items() if n > 1]
    if set(in_spool) != set(in_log):
        missing = sorted(set(in_log) - set(in_spool))[:5]
        extra = sorted(set(in_spool) - set(in_log))[:5]
        problems.append(f"spool differs from the log: missing {missing}, not logged {extra}")
    with tempfile.TemporaryDirectory(prefix="eventmail-replayed-") as scratch:
        copy = Path(scratch) / "spool"
        subprocess.run(
            eventmail("replay", "--data", str(data), "--into", str(copy)),
            check=True,
            capture_output=True,
            cwd=ROOT,
        )
        if spool_files(copy) != spool_files(data / "spool"):
            problems.append("the live spools differ from a fresh replay")
    return problems


def add_account(data: Path) -> None:
    subprocess.run(
        eventmail("accounts", "add", "--data", str(data), "--password-stdin", ACCOUNT),
        input="crash-test-password\n",
        text=True,
        check=True,
        capture_output=True,
        cwd=ROOT,
    )


def run(args: argparse.Namespace) -> int:
    scratch: Path | None = None
    data: Path = args.data
    if args.data is None:
        scratch = Path(tempfile.mkdtemp(prefix="eventmail-crash-"))
        data = scratch / "data"
    try:
        add_account(data)
        tally = Tally()
        for index in range(args.rounds):
            before = len(tally.acked)
            run_round(data, index, args, tally)
            print(f"round {index + 1}: {len(tally.acked) - before} acknowledged, killed")
        process, _ = start_server(data)  # recovers the projection on start
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        problems = audit(data, tally)
        logged = sum(log_ids(data).values())
        print(
            f"{len(tally.acked)} acknowledged, {len(tally.unacked)} cut off by a kill, "
            f"{logged} in the log"
        )
        for problem in problems[:20]:
            print("FAIL:", problem)
        if not problems:
            print("OK: every acknowledged message is in the log and the spool exactly once")
        return 1 if problems else 0
    finally:
        if scratch is not None and not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="load per round at most")
    parser.add_argument("--acks", type=int, default=None, help="kill once this many got a 250")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--data", type=Path, default=None, help="data directory (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(run(parse()))
