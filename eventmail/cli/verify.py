"""``eventmail verify``: check the whole log and print its head.

Three checks, in this order; the first failure is reported as one line:

1. the hash chain (``store.chain.verify_chain``), streamed over every record
   (read tolerantly, so a column of the wrong type is reported, not a crash):
   sequence, links, schema of each payload, message digests, hashes, and
   optionally an expected head recorded earlier (detects truncation/rollback);
2. the ``event_accounts`` index agrees with each event's accounts (``log --account``
   relies on it and the chain does not cover it);
3. the schema: every table, index, trigger and view the store defines is present
   with its original definition, and no foreign trigger sits on the log. A log
   whose append-only triggers were dropped or weakened fails verification even if
   its chain is intact, because it no longer refuses UPDATE and DELETE.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import click

from eventmail.cli.common import UserError, data_option
from eventmail.cli.reading import reading_log, records
from eventmail.store import Head
from eventmail.store.chain import VerifyResult, verify_chain
from eventmail.store.sqlite import SCHEMA, SCHEMA_VERSION

HEAD_SYNTAX = re.compile(r"\s*(\d{1,18})\s*[:\s]\s*([0-9a-fA-F]{64})\s*")
CREATE = re.compile(r"CREATE\s+(TABLE|INDEX|TRIGGER|VIEW)\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.I)

INDEX_MISMATCH = """
SELECT MIN(seq) FROM (
    SELECT seq FROM (
        SELECT e.seq AS seq, j.value AS account FROM events AS e, json_each(e.accounts) AS j
        EXCEPT SELECT seq, account FROM event_accounts)
    UNION ALL
    SELECT seq FROM (
        SELECT seq, account FROM event_accounts
        EXCEPT SELECT e.seq, j.value FROM events AS e, json_each(e.accounts) AS j)
)
"""


class HeadParam(click.ParamType):
    name = "SEQ:HASH"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None):
        if isinstance(value, Head):
            return value
        match = HEAD_SYNTAX.fullmatch(str(value))
        if match is None:
            self.fail(
                f"{value!r} is not SEQ:HASH (a sequence number and a 64-digit hex hash, "
                "as printed by `eventmail verify`)",
                param,
                ctx,
            )
        return Head(int(match.group(1)), match.group(2).lower())


def _normalized(sql: str) -> str:
    sql = re.sub(r"\bIF\s+NOT\s+EXISTS\s+", "", sql.strip().rstrip(";"), count=1, flags=re.I)
    return " ".join(sql.split())


def expected_objects() -> dict[str, tuple[str, str]]:
    """name -> (type, normalized SQL) for every object the store's schema creates."""
    objects: dict[str, tuple[str, str]] = {}
    current = ""
    for line in SCHEMA.splitlines(keepends=True):
        current += line
        if not sqlite3.complete_statement(current):
            continue
        match = CREATE.search(current)
        if match is not None:  # SQLite keeps the text from CREATE on, without IF NOT EXISTS
            sql = _normalized(current[match.start() :])
            objects[match.group(2)] = (match.group(1).lower(), sql)
        current = ""
    return objects


def schema_problem(conn: sqlite3.Connection) -> str | None:
    """What is wrong with the log's schema, or None."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version != SCHEMA_VERSION:
        return f"schema version {version}, expected {SCHEMA_VERSION}"
    present = {
        name: (type_, _normalized(sql or ""))
        for type_, name, sql in conn.execute("SELECT type, name, sql FROM sqlite_master")
    }
    for name, (type_, sql) in expected_objects().items():
        if name not in present or present[name][0] != type_:
            why = " (the log no longer refuses UPDATE/DELETE)" if type_ == "trigger" else ""
            return f"{type_} {name} is missing{why}"
        if present[name][1] != sql:
            return f"{type_} {name} differs from its definition (altered)"
    expected = expected_objects()
    for name, (type_, _) in sorted(present.items()):
        if type_ == "trigger" and name not in expected:
            return f"unexpected trigger {name}"
    return None


def first_bad_seq(result: VerifyResult) -> int:
    """The first seq that is not what it should be (for a gap: the missing one)."""
    assert result.error is not None
    if result.error.seq <= result.head.seq:
        return result.error.seq
    return result.head.seq + 1


@click.command("verify")
@data_option
@click.option(
    "--expect-head",
    type=HeadParam(),
    metavar="SEQ:HASH",
    help="A head printed by an earlier verify (`SEQ:HASH` or `SEQ HASH`): the log must still "
    "hold event SEQ with that hash, so truncation or rollback is detected.",
)
def verify(data: Path, expect_head: Head | None) -> None:
    """Check the log's integrity and print its head as `SEQ HASH`.

    Walks the whole hash chain (sequence, links, payload schema, message
    digests, hashes), checks the account index and the schema (tables, views,
    append-only triggers). Exit 0 and the head on success; exit 1 with one line
    naming the first bad seq (or the schema problem) otherwise.

    Record the head somewhere else; later `eventmail verify --expect-head
    SEQ:HASH` proves the log was not cut back or rewritten since.
    """
    with reading_log(data) as log:
        result = verify_chain(records(log.connection), expect_head)
        if result.error is not None:
            raise UserError(f"verify failed at seq {first_bad_seq(result)}: {result.error.reason}")
        conn = log.connection
        (bad_index,) = conn.execute(INDEX_MISMATCH).fetchone()
        if bad_index is not None:
            raise UserError(
                f"verify failed at seq {bad_index}: the event_accounts index disagrees with "
                "the event's accounts (edited outside eventmail)"
            )
        problem = schema_problem(conn)
        if problem is not None:
            raise UserError(f"verify failed: schema: {problem}")
    click.echo(f"{result.head.seq} {result.head.hash}")
