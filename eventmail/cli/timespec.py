"""Parse the times an operator types for --since/--until (pure: ``now`` is passed in).

Accepted: ISO 8601 dates and times (``2026-11-29``, ``2026-11-29T10:00``,
``2026-11-29 10:00:30.5``), with ``Z`` or an offset or neither (naive means UTC);
ages such as ``90s``, ``10m``, ``2h``, ``3d``, ``1w`` (that long before ``now``);
and ``now``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

AGE = re.compile(r"(\d{1,9})\s*([smhdw])")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
HINT = "use an ISO date/time (2026-11-29, 2026-11-29T10:00, ...Z or +01:00) or an age (10m, 2h, 3d)"


class TimeSpecError(ValueError):
    """The text is not a time this module understands."""


def parse_time(text: str, now: datetime) -> datetime:
    """The aware UTC moment ``text`` names; ``now`` anchors ages like ``2h``."""
    spec = text.strip()
    if spec.lower() == "now":
        return now.astimezone(UTC)
    age = AGE.fullmatch(spec.lower())
    if age is not None:
        amount, unit = int(age.group(1)), age.group(2)
        try:
            return (now - timedelta(**{UNITS[unit]: amount})).astimezone(UTC)
        except OverflowError:
            raise TimeSpecError(f"{text!r} reaches too far back") from None
    try:
        moment = datetime.fromisoformat(spec)
    except ValueError:
        raise TimeSpecError(f"cannot read {text!r} as a time: {HINT}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
