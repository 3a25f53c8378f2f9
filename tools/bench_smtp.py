"""SMTP receiving benchmark: eventmail against aiosmtpd writing an mbox.

    python tools/bench_smtp.py [--connections 50] [--seconds 10] [--size 4096]
                               [--idle 1000] [--profile]

Servers, each started as a subprocess on 127.0.0.1 with a temporary directory:

  eventmail        ``eventmail serve`` with one account (event log: WAL, synchronous=FULL,
                   group commit; 250 only after the commit is durable)
  aiosmtpd+fsync   aiosmtpd whose handler appends each message to an mbox and fsyncs
  aiosmtpd         the same without fsync (not durable: the no-durability ceiling)

One trio client drives all three the same way: N connections, each sending
MAIL, RCPT, DATA and a message of --size octets in a loop for --seconds. It
reports messages/s and the latency from the end of the data to the 250 reply.
Then it opens --idle connections to eventmail and reads the server's VmRSS.
--profile runs eventmail under cProfile and prints where its main thread spends time.

aiosmtpd is installed into this interpreter's environment with pip if missing.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import trio

ACCOUNT = "bench"
LISTENING = re.compile(r"SMTP listening on \[?[^\]\s]+?\]?:(\d+)")
REPLY_LINE = re.compile(rb"^(\d{3})([ -])[^\r\n]*\r\n", re.MULTILINE)
START_TIMEOUT = 30.0


# --- the aiosmtpd comparison server (run as: bench_smtp.py aiosmtpd-server ...) -------------


def aiosmtpd_server(mbox: Path, fsync: bool) -> None:
    import asyncio

    from aiosmtpd.smtp import SMTP

    quote = re.compile(rb"^(>*From )", re.MULTILINE)

    class MboxHandler:
        def __init__(self) -> None:
            self.file = open(mbox, "ab")  # noqa: SIM115 - lives as long as the server

        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server, session, envelope):
            content = envelope.original_content.replace(b"\r\n", b"\n")
            stamp = time.asctime(time.gmtime())
            entry = f"From {envelope.mail_from or 'MAILER-DAEMON'} {stamp}\n".encode()
            self.file.write(entry + quote.sub(rb">\1", content) + b"\n")
            self.file.flush()
            if fsync:
                os.fsync(self.file.fileno())
            return "250 OK"

    async def main() -> None:
        handler = MboxHandler()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(handler), "127.0.0.1", 0, backlog=1024)
        print(f"SMTP listening on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
        await server.serve_forever()

    asyncio.run(main())


# --- servers under test -------------------------------------------------------------------


@dataclass
class Server:
    name: str
    process: subprocess.Popen[str]
    port: int
    output: list[str] = field(default_factory=list)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            out, _ = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
        return out


def start(name: str, argv: list[str], env: dict[str, str] | None = None) -> Server:
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line.rstrip())
        match = LISTENING.search(line)
        if match:
            # Keep draining output so the server never blocks on a full pipe.
            _drain_in_background(process)
            return Server(name, process, int(match[1]), seen)
    process.kill()
    raise RuntimeError(f"{name} did not start:\n" + "\n".join(seen))


def _drain_in_background(process: subprocess.Popen[str]) -> None:
    import threading

    def drain() -> None:
        assert process.stdout is not None
        for _ in process.stdout:
            pass

    threading.Thread(target=drain, daemon=True).start()


@contextlib.contextmanager
def eventmail(workdir: Path, profile: Path | None) -> Iterator[Server]:
    data = workdir / "data"
    eventmail_cli = [sys.executable, "-m", "eventmail"]
    subprocess.run(
        [*eventmail_cli, "accounts", "add", "--data", str(data), "--password-stdin", ACCOUNT],
        input="bench-password\n",
        text=True,
        check=True,
        capture_output=True,
    )
    runner = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "eventmail"]
    argv = [*(runner if profile else eventmail_cli), "serve", "--data", str(data)]
    argv += ["--smtp", "127.0.0.1:0", "--pop3", "127.0.0.1:0"]
    server = start("eventmail", argv)
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def aiosmtpd(workdir: Path, fsync: bool) -> Iterator[Server]:
    mbox = workdir / ("fsync.mbox" if fsync else "nofsync.mbox")
    argv = [sys.executable, __file__, "aiosmtpd-server", str(mbox)]
    if fsync:
        argv.append("--fsync")
    server = start("aiosmtpd+fsync" if fsync else "aiosmtpd", argv)
    try:
        yield server
    finally:
        server.stop()


def ensure_aiosmtpd() -> None:
    if importlib.util.find_spec("aiosmtpd") is None:
        print("installing aiosmtpd ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "aiosmtpd"], check=True)


# --- the client -----------------------------------------------------------------------------


class Replies:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def expect(self, code: int) -> None:
        while True:
            match = REPLY_LINE.search(self.buffer)
            if match is None:
                data = await self.stream.receive_some(65536)
                if not data:
                    raise ConnectionError("server closed the connection")
                self.buffer += data
                continue
            self.buffer = self.buffer[match.end() :]
            if match[2] == b" ":
                if int(match[1]) != code:
                    raise ConnectionError(f"expected {code}, got {match[0]!r}")
                return


def make_message(size: int) -> bytes:
    head = b"From: bench@example.org\r\nTo: bench@localhost\r\nSubject: bench\r\n\r\n"
    line = b"abcdefghijklmnopqrstuvwxyz0123456789 " * 2 + b"\r\n"
    body = line * ((size - len(head)) // len(line) + 1)
    return (head + body)[:size].rsplit(b"\r\n", 1)[0] + b"\r\n"


@dataclass
class Result:
    name: str
    messages: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def percentile(self, p: float) -> float:
        if len(self.latencies) < 2:
            return float("nan")
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[int(p) - 1]


async def sender(port: int, stop_at: float, message: bytes, latencies: list[float]) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        replies = Replies(stream)
        await replies.expect(220)
        await stream.send_all(b"EHLO bench.example\r\n")
        await replies.expect(250)
        while time.monotonic() < stop_at:
            await stream.send_all(b"MAIL FROM:<bench@example.org>\r\n")
            await replies.expect(250)
            await stream.send_all(f"RCPT TO:<{ACCOUNT}@localhost>\r\n".encode())
            await replies.expect(250)
            await stream.send_all(b"DATA\r\n")
            await replies.expect(354)
            await stream.send_all(message)
            started = time.perf_counter()
            await stream.send_all(b".\r\n")
            await replies.expect(250)
            latencies.append(time.perf_counter() - started)
        await stream.send_all(b"QUIT\r\n")
        await replies.expect(221)


async def load(name: str, port: int, connections: int, seconds: float, size: int) -> Result:
    message = make_message(size)
    latencies: list[float] = []
    began = time.monotonic()
    async with trio.open_nursery() as nursery:
        for _ in range(connections):
            nursery.start_soon(sender, port, began + seconds, message, latencies)
    return Result(name, len(latencies), time.monotonic() - began, latencies)


async def idle_connections(server: Server, count: int) -> tuple[int, int]:
    """VmRSS (KiB) of the server before and with ``count`` idle, greeted connections."""
    before = server.rss_kib()
    streams: list[trio.SocketStream] = []
    try:
        for _ in range(count):
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            streams.append(stream)
            await Replies(stream).expect(220)
        await trio.sleep(0.5)
        return before, server.rss_kib()
    finally:
        for stream in streams:
            await stream.aclose()


# --- driver ---------------------------------------------------------------------------------


def print_table(results: list[Result]) -> None:
    print(f"{'server':<16} {'msgs':>7} {'msg/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for r in results:
        p50, p99 = r.percentile(50) * 1000, r.percentile(99) * 1000
        print(f"{r.name:<16} {r.messages:>7} {r.rate:>9.1f} {p50:>8.2f} {p99:>8.2f}")
    base = results[0]
    for other in results[1:]:
        print(f"eventmail / {other.name}: {base.rate / other.rate:.2f}x")


def print_profile(path: Path, top: int = 25) -> None:
    import pstats

    print(f"\ncProfile of the eventmail server process (main thread), top {top} by own time:")
    pstats.Stats(str(path)).sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ensure_aiosmtpd()
    run = (args.connections, args.seconds, args.size)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-smtp-") as tmp:
        workdir = Path(tmp)
        with eventmail(workdir / "plain", None) as server:
            results.append(trio.run(load, server.name, server.port, *run))
            rss = trio.run(idle_connections, server, args.idle) if args.idle else None
        for fsync in (True, False):
            with aiosmtpd(workdir, fsync) as server:
                results.append(trio.run(load, server.name, server.port, *run))
        print(
            f"\n{args.connections} connections, {args.size}-octet messages, "
            f"{args.seconds:g} s per server, {os.cpu_count()} CPUs\n"
        )
        print_table(results)
        if rss is not None:
            before, during = rss
            print(
                f"\neventmail VmRSS: {before / 1024:.1f} MiB before, "
                f"{during / 1024:.1f} MiB with {args.idle} idle connections"
            )
        if args.profile:
            profile = workdir / "eventmail.prof"
            with eventmail(workdir / "profiled", profile) as server:
                profiled = trio.run(load, "eventmail+cProfile", server.port, *run)
            print(f"\nunder cProfile: {profiled.rate:.1f} msg/s")
            print_profile(profile)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "aiosmtpd-server":
        aiosmtpd_server(Path(sys.argv[2]), fsync="--fsync" in sys.argv[3:])
    else:
        main()
