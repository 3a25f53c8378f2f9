"""The crash test, short form: kill -9 the server under SMTP load twice, then audit.

Each round ends once 40 messages got their 250 (not after a fixed time), the
server is killed with SIGKILL, and after a final restart every acknowledged
message must be in the log and the spool exactly once (see tools/crash_test.py).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_kill_9_under_load_loses_and_doubles_nothing(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "crash_test.py"),
            "--rounds", "2",
            "--acks", "40",
            "--seconds", "60",
            "--clients", "3",
            "--data", str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: every acknowledged message" in result.stdout
    acknowledged = re.search(r"^(\d+) acknowledged, ", result.stdout, re.MULTILINE)
    assert acknowledged and int(acknowledged[1]) >= 80, result.stdout
