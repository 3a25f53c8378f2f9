"""The projector's checkpoint: what is durably applied, written atomically.

``.checkpoint.json`` names the last applied seq, the durable byte length of
every live spool and index, and renames still to be done (a reset's rewritten
files, a removed account's files moving aside). It is replaced with a temp file,
fsync, rename and a directory fsync, so a crash leaves either the old or the new
one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import msgspec

from projections.layout import CHECKPOINT

Fault = Callable[[str], None]
TEMP_NAME = CHECKPOINT + ".tmp"


class Checkpoint(msgspec.Struct, kw_only=True):
    version: int = 1
    seq: int = 0  # every event up to here is in the files below
    accounts: dict[str, tuple[int, int]] = {}  # account -> (spool bytes, index bytes)
    pending: list[tuple[str, str]] = []  # renames (src, dst) relative to the spool dir


_encoder = msgspec.json.Encoder(order="deterministic")
_decoder = msgspec.json.Decoder(Checkpoint)


def no_fault(step: str) -> None:
    pass


def load(spool_dir: Path) -> Checkpoint | None:
    """The checkpoint, or None if there is none (or it is unreadable: rebuild then)."""
    try:
        return _decoder.decode((spool_dir / CHECKPOINT).read_bytes())
    except FileNotFoundError:
        return None
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def save(
    spool_dir: Path, checkpoint: Checkpoint, fault: Fault = no_fault, *, durable: bool = True
) -> None:
    path = spool_dir / CHECKPOINT
    temp = spool_dir / TEMP_NAME
    data = _encoder.encode(checkpoint)
    fault("checkpoint.write")
    with open(temp, "wb") as file:
        file.write(data)
        file.flush()
        fault("checkpoint.fsync")
        if durable:
            os.fsync(file.fileno())
    fault("checkpoint.rename")
    os.replace(temp, path)
    fault("checkpoint.dirsync")
    if durable:
        fsync_dir(spool_dir)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
