"""MAIL and RCPT arguments: paths and ESMTP parameters (RFC 5321, 1870, 6152, 3461, 6531).

Pure: text in, a sender or recipient and its parameters out, or a ``CommandError``
carrying the reply to send. DSN parameters (RET, ENVID, NOTIFY, ORCPT) are
checked for shape and recorded; nothing acts on them yet.
"""

from __future__ import annotations

from eventmail.smtp import replies
from eventmail.smtp.address import Mailbox, parse_mailbox, parse_params, split_path
from eventmail.smtp.replies import Reply

_BODY_TYPES = frozenset({"7BIT", "8BITMIME"})
_RET_VALUES = frozenset({"FULL", "HDRS"})
_NOTIFY_VALUES = frozenset({"SUCCESS", "FAILURE", "DELAY"})
_MAX_SIZE_DIGITS = 20


class CommandError(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.text)
        self.reply = reply


def _params(text: str) -> dict[str, str]:
    params = parse_params(text)
    if params == "duplicate":
        raise CommandError(replies.DUPLICATE_PARAMETER)
    if isinstance(params, str):
        raise CommandError(replies.BAD_PARAMETER)
    return params


class MailParser:
    def __init__(self, *, max_size: int) -> None:
        self.max_size = max_size

    def mail(self, argument: str) -> tuple[str, dict[str, str]]:
        """The sender ("" for <>) and the MAIL parameters."""
        parts = split_path(argument, "FROM")
        if parts is None:
            raise CommandError(replies.BAD_MAIL_SYNTAX)
        path, param_text = parts
        params = _params(param_text)
        for key, value in params.items():
            self._check_mail_param(key, value)
        if not path:
            return "", params
        mailbox = parse_mailbox(path)
        if mailbox is None:
            raise CommandError(replies.BAD_SENDER)
        if not mailbox.is_ascii and "SMTPUTF8" not in params:
            raise CommandError(replies.NON_ASCII_WITHOUT_SMTPUTF8)
        return mailbox.address, params

    def _check_mail_param(self, key: str, value: str) -> None:
        if key == "SIZE":
            if not value.isdigit() or len(value) > _MAX_SIZE_DIGITS:
                raise CommandError(replies.BAD_PARAMETER)
            if int(value) > self.max_size:
                raise CommandError(replies.SIZE_EXCEEDED)
        elif key == "BODY":
            if value.upper() not in _BODY_TYPES:
                raise CommandError(replies.BAD_PARAMETER)
        elif key == "SMTPUTF8":
            if value:
                raise CommandError(replies.BAD_PARAMETER)
        elif key == "RET":
            if value.upper() not in _RET_VALUES:
                raise CommandError(replies.BAD_PARAMETER)
        elif key == "ENVID":
            if not value:
                raise CommandError(replies.BAD_PARAMETER)
        else:
            raise CommandError(replies.UNKNOWN_PARAMETER)

    def rcpt(self, argument: str, *, utf8: bool) -> tuple[Mailbox, dict[str, str]]:
        """The recipient mailbox (domain "" for a bare postmaster) and its parameters."""
        parts = split_path(argument, "TO")
        if parts is None:
            raise CommandError(replies.BAD_RCPT_SYNTAX)
        path, param_text = parts
        params = _params(param_text)
        for key, value in params.items():
            _check_rcpt_param(key, value)
        mailbox = parse_mailbox(path, allow_local_only=True)
        if mailbox is None:
            raise CommandError(replies.BAD_RECIPIENT)
        if not mailbox.is_ascii and not utf8:
            raise CommandError(replies.NON_ASCII_WITHOUT_SMTPUTF8)
        return mailbox, params


def _check_rcpt_param(key: str, value: str) -> None:
    if key == "NOTIFY":
        words = value.upper().split(",")
        if words != ["NEVER"] and not (words and set(words) <= _NOTIFY_VALUES):
            raise CommandError(replies.BAD_PARAMETER)
    elif key == "ORCPT":
        addr_type, semicolon, address = value.partition(";")
        if not (addr_type and semicolon and address):
            raise CommandError(replies.BAD_PARAMETER)
    else:
        raise CommandError(replies.UNKNOWN_PARAMETER)
