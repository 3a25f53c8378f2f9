"""Notice new events, whoever appended them: this process or another one.

Polling is the portable way to see another process's commits to a SQLite
file. It is kept cheap: a log that offers ``change_token()`` (the SQLite log:
``PRAGMA data_version`` plus its own commit count) is asked that first, and the
head is read only when the token moved.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import trio

from eventmail.store.base import EventLog, Head

DEFAULT_POLL_INTERVAL = 0.25  # seconds: well within "a new account can receive mail in a second"


class HeadWatcher:
    """Waits for the head of ``log`` to move past a seq, polling cheaply."""

    def __init__(self, log: EventLog, poll_interval: float = DEFAULT_POLL_INTERVAL) -> None:
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        self.log = log
        self.poll_interval = poll_interval
        self._token_of: Callable[[], Hashable] | None = getattr(log, "change_token", None)
        self._token: Hashable | None = None
        self._head: Head | None = None
        self.head_reads = 0  # how often the head was actually read (for tests and tuning)

    def probe(self) -> Head:
        """One poll: the current head, read from the log only if the token moved."""
        # The token is read before the head, so a commit racing with the probe is
        # either in this head or moves the token for the next probe.
        if self._token_of is None:
            self.head_reads += 1
            return self.log.head()
        token = self._token_of()
        if self._head is None or token != self._token:
            self._head = self.log.head()
            self.head_reads += 1
            self._token = token
        return self._head

    async def wait_beyond(self, last_seq: int) -> Head:
        """Return the head as soon as its seq is above ``last_seq``."""
        while True:
            # On a worker thread: the log's lock may be held by a commit in progress.
            head = await trio.to_thread.run_sync(self.probe)
            if head.seq > last_seq:
                return head
            await trio.sleep(self.poll_interval)


async def wait_for_head_change(
    log: EventLog, last_seq: int, poll_interval: float = DEFAULT_POLL_INTERVAL
) -> Head:
    """Return the head of ``log`` once an event with a seq above ``last_seq`` is committed."""
    return await HeadWatcher(log, poll_interval).wait_beyond(last_seq)
