"""The import rules of the design, enforced.

- Only the composition roots (eventmail/cli/, eventmail/serve.py) import both
  the write side (eventmail) and the read side (projections).
- Projections are pure folds: no Trio, no servers, no clock, no environment.
- Protocol cores are sans-IO: no sockets, no Trio, no database, no clock.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPOSITION_ROOTS = {"eventmail/serve.py"}
CLOCK_OR_ENV = ("datetime.now", "datetime.utcnow", "time.time", "os.environ", "os.getenv")


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def is_composition_root(path: Path) -> bool:
    name = rel(path)
    return name in COMPOSITION_ROOTS or name.startswith("eventmail/cli/")


@pytest.mark.parametrize("path", modules("eventmail"), ids=rel)
def test_write_side_does_not_import_read_side(path: Path) -> None:
    if is_composition_root(path):
        return
    bad = {name for name in imported(path) if name.split(".")[0] == "projections"}
    assert not bad, f"{rel(path)} imports the read side: {bad}"


@pytest.mark.parametrize("path", modules("projections"), ids=rel)
def test_projections_are_pure(path: Path) -> None:
    names = imported(path)
    forbidden = {
        n
        for n in names
        if n.split(".")[0] in {"trio", "socket"}
        or n.startswith(("eventmail.smtp", "eventmail.pop3", "eventmail.cli", "eventmail.serve"))
    }
    assert not forbidden, f"{rel(path)} imports {forbidden}"
    source = path.read_text(encoding="utf-8")
    assert not [c for c in CLOCK_OR_ENV if c in source], f"{rel(path)} reads the clock or env"


SANS_IO_CORES = ["eventmail/smtp/protocol.py", "eventmail/pop3/protocol.py"]


@pytest.mark.parametrize("name", SANS_IO_CORES)
def test_protocol_cores_are_sans_io(name: str) -> None:
    path = ROOT / name
    assert path.exists(), f"{name} is missing"
    names = imported(path)
    forbidden = {
        n for n in names if n.split(".")[0] in {"trio", "socket", "sqlite3", "asyncio", "time"}
    }
    forbidden |= {n for n in names if n.startswith("eventmail.store")}
    assert not forbidden, f"{name} does I/O through {forbidden}"
    source = path.read_text(encoding="utf-8")
    assert "await " not in source and "async def" not in source
    assert not [c for c in CLOCK_OR_ENV if c in source]
