"""Where the projection keeps its files inside a spool directory.

<spool>/<account>.TXT               the mailbox (mboxrd)
<spool>/.index/<account>.idx        one IndexEntry line per message in the mailbox
<spool>/.checkpoint.json            the last applied seq and every file's durable length
<spool>/removed/<account>-<seq>.TXT a removed account's mailbox (and .idx), kept aside
"""

from __future__ import annotations

import re
from pathlib import Path

INDEX_DIR = ".index"
REMOVED_DIR = "removed"
CHECKPOINT = ".checkpoint.json"
SPOOL_SUFFIX = ".TXT"
INDEX_SUFFIX = ".idx"
NEW_SUFFIX = ".new"

# The account rule of the write side; names that break it are never used as paths.
ACCOUNT_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def is_account_name(name: str) -> bool:
    return ACCOUNT_NAME.fullmatch(name) is not None


def spool_name(account: str) -> str:
    return account + SPOOL_SUFFIX


def index_name(account: str) -> str:
    return f"{INDEX_DIR}/{account}{INDEX_SUFFIX}"


def removed_names(account: str, seq: int) -> tuple[str, str]:
    """Where a removed account's spool and index go (relative to the spool dir)."""
    stem = f"{REMOVED_DIR}/{account}-{seq}"
    return stem + SPOOL_SUFFIX, stem + INDEX_SUFFIX


def spool_path(spool_dir: Path, account: str) -> Path:
    if not is_account_name(account):
        raise ValueError(f"invalid account name {account!r}")
    return spool_dir / spool_name(account)


def index_path(spool_dir: Path, account: str) -> Path:
    if not is_account_name(account):
        raise ValueError(f"invalid account name {account!r}")
    return spool_dir / index_name(account)
