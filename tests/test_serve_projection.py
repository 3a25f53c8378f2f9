"""The projection runner inside serve: waiting for a seq, surviving spool write failures."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from eventmail.serve import ProjectionRunner


class FlakyProjector:
    """Applies one event per catch_up; the first ``failures`` calls raise OSError."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.applied_seq = 0
        self.calls = 0

    def catch_up(self) -> int:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise OSError(28, "No space left on device")
        self.applied_seq += 1
        return self.applied_seq


async def test_wait_applied_returns_once_the_projector_reaches_the_seq(
    autojump_clock: trio.testing.MockClock,
) -> None:
    projector = FlakyProjector(failures=0)
    runner = ProjectionRunner(projector)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(runner.run)
        await runner.wait_applied(3)
        assert runner.applied_seq == 3
        nursery.cancel_scope.cancel()


async def test_a_failing_projection_is_retried_and_does_not_stop_the_server(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    projector = FlakyProjector(failures=3)
    runner = ProjectionRunner(projector)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(runner.run)
        started = trio.current_time()
        await runner.wait_applied(1)
        waited = trio.current_time() - started
        nursery.cancel_scope.cancel()
    assert projector.calls == 4
    assert waited >= 0.5 + 1.0 + 2.0  # backed off between attempts
    assert caplog.text.count("projection failed") == 3


class Lagging(FlakyProjector):
    def statistics(self) -> object:
        return type("Stats", (), {"lag": 42})()


async def test_a_slow_catch_up_reports_the_lag(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import eventmail.serve

    monkeypatch.setattr(eventmail.serve, "SLOW_CATCH_UP", 0.0)
    caplog.set_level("INFO", logger="eventmail")
    runner = ProjectionRunner(Lagging(failures=0))  # type: ignore[arg-type]
    await runner.catch_up()
    assert "projector reached seq 1" in caplog.text
    assert "42 events behind the log" in caplog.text
