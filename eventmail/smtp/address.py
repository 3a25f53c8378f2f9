"""Envelope address syntax (RFC 5321 4.1.2, RFC 6531 for SMTPUTF8): pure parsing.

The patterns accept UTF-8 everywhere an SMTPUTF8 address may carry it; whether
non-ASCII is allowed in this transaction is the caller's decision.
"""

from __future__ import annotations

import re

import msgspec

_NON_ASCII = "\u0080-\U0010ffff"
_ATEXT = rf"[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~{_NON_ASCII}-]"
_DOT_STRING = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_QUOTED = rf'"(?:[\x20\x21\x23-\x5b\x5d-\x7e{_NON_ASCII}]|\\[\x20-\x7e])*"'
_LABEL = rf"[A-Za-z0-9{_NON_ASCII}](?:[A-Za-z0-9{_NON_ASCII}-]*[A-Za-z0-9{_NON_ASCII}])?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*"
_ADDRESS_LITERAL = r"\[[\x21-\x5a\x5e-\x7e]+\]"

_MAILBOX = re.compile(rf"({_DOT_STRING}|{_QUOTED})@({_DOMAIN}|{_ADDRESS_LITERAL})")
_LOCAL_ONLY = re.compile(rf"{_DOT_STRING}|{_QUOTED}")
_SOURCE_ROUTE = re.compile(rf"@{_DOMAIN}(?:,@{_DOMAIN})*:")
_PARAM_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_PARAM_VALUE = re.compile(rf"[\x21-\x3c\x3e-\x7e{_NON_ASCII}]+")

MAX_LOCAL_PART = 64  # RFC 5321 4.5.3.1.1
MAX_DOMAIN = 255  # RFC 5321 4.5.3.1.2


class Mailbox(msgspec.Struct, frozen=True):
    local: str
    domain: str  # "" only for the bare "postmaster" recipient

    @property
    def address(self) -> str:
        return f"{self.local}@{self.domain}" if self.domain else self.local

    @property
    def is_ascii(self) -> bool:
        return self.address.isascii()


def split_path(argument: str, keyword: str) -> tuple[str, str] | None:
    """Split ``FROM:<path> params`` into the text inside ``<>`` and the parameter text.

    Tolerates spaces after the colon (common in the wild); None if malformed.
    """
    head, colon, rest = argument.partition(":")
    if not colon or head.strip().upper() != keyword:
        return None
    rest = rest.lstrip(" ")
    if not rest.startswith("<"):
        return None
    end = _closing_bracket(rest)
    if end is None:
        return None
    params = rest[end + 1 :]
    if params and not params.startswith(" "):
        return None
    return rest[1:end], params.strip(" ")


def _closing_bracket(text: str) -> int | None:
    quoted = escaped = False
    for i, ch in enumerate(text[1:], start=1):
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ">" and not quoted:
            return i
    return None


def parse_mailbox(path: str, *, allow_local_only: bool = False) -> Mailbox | None:
    """A mailbox from the text inside ``<>``; a source route is dropped. None if invalid."""
    route = _SOURCE_ROUTE.match(path)
    if route:
        path = path[route.end() :]
    match = _MAILBOX.fullmatch(path)
    if match:
        local, domain = match.group(1), match.group(2)
        if len(local.encode()) > MAX_LOCAL_PART or len(domain.encode()) > MAX_DOMAIN:
            return None
        return Mailbox(local, domain)
    if allow_local_only and _LOCAL_ONLY.fullmatch(path):
        return Mailbox(path, "")
    return None


def parse_params(text: str) -> dict[str, str] | str:
    """``KEY[=VALUE]`` words into a dict with upper-case keys; an error word otherwise.

    The error is ``"syntax"`` or ``"duplicate"``.
    """
    params: dict[str, str] = {}
    for word in text.split():
        key, eq, value = word.partition("=")
        if not _PARAM_KEY.fullmatch(key) or (eq and not _PARAM_VALUE.fullmatch(value)):
            return "syntax"
        key = key.upper()
        if key in params:
            return "duplicate"
        params[key] = value
    return params
