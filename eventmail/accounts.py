"""Accounts, event-sourced: commands return events, the current state is a fold.

Passwords are stored only as scrypt hashes with a per-account random salt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable

from eventmail.events import AccountCreated, AccountRemoved, Event, PasswordChanged
from eventmail.store.base import EventLog, Record

NAME_RULE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
ACCOUNT_EVENT_TYPES = ("AccountCreated", "PasswordChanged", "AccountRemoved")

# scrypt cost: about 16 MiB and tens of milliseconds per check.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
# A stored hash naming a higher cost is refused, not computed: it could take hours.
MAX_SCRYPT_N, MAX_SCRYPT_R, MAX_SCRYPT_P = 2**17, 32, 16
MAX_PASSWORD_BYTES = 1024


class AccountError(ValueError):
    """A user error about accounts; the message is one line for the operator."""


def validate_name(name: str) -> str:
    if not NAME_RULE.fullmatch(name):
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise AccountError(
            f"invalid account name {shown!r}: use 1-64 characters of lowercase a-z, 0-9, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    return name


def validate_password(password: str) -> str:
    if not password:
        raise AccountError("the password must not be empty")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise AccountError(f"the password must be at most {MAX_PASSWORD_BYTES} bytes")
    if any(ch in password for ch in "\r\n\0"):
        raise AccountError("the password must not contain CR, LF or NUL")
    return password


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        cost_n, cost_r, cost_p = int(n), int(r), int(p)
        if scheme != "scrypt" or not (
            cost_n <= MAX_SCRYPT_N and cost_r <= MAX_SCRYPT_R and cost_p <= MAX_SCRYPT_P
        ):
            return False
        expected = base64.b64decode(digest, validate=True)
        if not expected:
            return False
        actual = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt, validate=True),
            n=cost_n,
            r=cost_r,
            p=cost_p,
            maxmem=256 * 1024 * 1024,
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# A hash to check against when the account does not exist, so that a failed
# login costs the same time either way.
DUMMY_HASH = hash_password("not a real password", salt=b"\0" * 16)


class Accounts:
    """The current accounts: a fold over account events."""

    def __init__(self) -> None:
        self._hashes: dict[str, str] = {}
        self.last_seq = 0

    def apply(self, event: Event) -> None:
        match event:
            case (
                AccountCreated(name=name, password_hash=h)
                | PasswordChanged(name=name, password_hash=h)
            ):
                self._hashes[name] = h
            case AccountRemoved(name=name):
                self._hashes.pop(name, None)

    def apply_records(self, records: Iterable[Record]) -> None:
        for record in records:
            if record.type in ACCOUNT_EVENT_TYPES:
                self.apply(record.event)
            self.last_seq = max(self.last_seq, record.seq)

    def catch_up(self, log: EventLog) -> None:
        """Apply every account event committed after the last one seen.

        The head is read first, and only events up to it are applied: an event
        committed meanwhile is picked up by the next call, never skipped.
        """
        head = log.head().seq
        self.apply_records(
            record
            for record in log.read_after(self.last_seq, types=ACCOUNT_EVENT_TYPES)
            if record.seq <= head
        )
        self.last_seq = max(self.last_seq, head)

    def __contains__(self, name: object) -> bool:
        return name in self._hashes

    def names(self) -> list[str]:
        return sorted(self._hashes)

    def check_password(self, name: str, password: str) -> bool:
        """True if the account exists and the password matches (constant work)."""
        stored = self._hashes.get(name)
        ok = verify_password(password, stored if stored is not None else DUMMY_HASH)
        return ok and stored is not None

    # --- commands: validate against the current state, return the event ----

    def create(self, name: str, password: str) -> AccountCreated:
        validate_name(name)
        if name in self._hashes:
            raise AccountError(f"account {name!r} already exists")
        validate_password(password)
        return AccountCreated(name=name, password_hash=hash_password(password))

    def change_password(self, name: str, password: str) -> PasswordChanged:
        validate_name(name)
        if name not in self._hashes:
            raise AccountError(f"no account named {name!r}")
        validate_password(password)
        return PasswordChanged(name=name, password_hash=hash_password(password))

    def remove(self, name: str) -> AccountRemoved:
        validate_name(name)
        if name not in self._hashes:
            raise AccountError(f"no account named {name!r}")
        return AccountRemoved(name=name)
