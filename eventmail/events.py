"""Every event eventmail records, as one msgspec tagged union.

The log stores each event's JSON encoding (``encode``) as its payload; the hash
chain hashes those exact bytes, so the encoding must be deterministic: struct
fields in definition order, dict keys sorted.

Schema evolution: add fields with defaults and bump ``v`` of new writes; never
rename or retype a field. Old payloads keep decoding because missing fields take
their defaults.
"""

from __future__ import annotations

import msgspec


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every event. ``v`` is the schema version of the payload."""

    v: int = 1

    def accounts(self) -> tuple[str, ...]:
        """The account names this event concerns (indexed by the log)."""
        return ()


# --- accounts ---------------------------------------------------------------


class AccountCreated(Event, frozen=True, kw_only=True):
    name: str
    password_hash: str  # "scrypt$n$r$p$salt$hash", never a plain password

    def accounts(self) -> tuple[str, ...]:
        return (self.name,)


class PasswordChanged(Event, frozen=True, kw_only=True):
    name: str
    password_hash: str

    def accounts(self) -> tuple[str, ...]:
        return (self.name,)


class AccountRemoved(Event, frozen=True, kw_only=True):
    name: str

    def accounts(self) -> tuple[str, ...]:
        return (self.name,)


# --- mail in (SMTP) -----------------------------------------------------------


class Recipient(msgspec.Struct, frozen=True, kw_only=True):
    account: str  # local account that receives the message
    address: str  # the RCPT TO address as the client gave it
    params: dict[str, str] = {}  # RCPT parameters, e.g. DSN NOTIFY / ORCPT


class MessageAccepted(Event, frozen=True, kw_only=True):
    """SMTP DATA completed; the 250 is sent only once this event is durable.

    The message bytes (CRLF line endings, dot-unstuffed, with the ``Received:``
    header the server prepended) are stored beside the event, not in it.
    """

    message_id: str  # the queue id quoted in the 250 reply and Received header
    mail_from: str  # envelope sender; "" for the null sender <>
    mail_params: dict[str, str] = {}  # MAIL parameters: SIZE, BODY, SMTPUTF8, RET, ENVID
    recipients: tuple[Recipient, ...]
    peer: str  # "ip:port" of the client
    helo: str  # the EHLO/HELO name the client gave
    size: int  # octets of the stored message
    sha256: str  # hex digest of the stored message

    def accounts(self) -> tuple[str, ...]:
        return tuple(sorted({r.account for r in self.recipients}))


# --- mail out (POP3) ----------------------------------------------------------


class MailboxFetched(Event, frozen=True, kw_only=True):
    """A POP3 client retrieved a message (RETR) or part of one (TOP)."""

    account: str
    message_seq: int  # seq of the MessageAccepted event
    uidl: str
    command: str  # "RETR" or "TOP"
    peer: str

    def accounts(self) -> tuple[str, ...]:
        return (self.account,)


class MailboxReset(Event, frozen=True, kw_only=True):
    """A POP3 session reached UPDATE with deletions: these messages left the mailbox."""

    account: str
    removed: tuple[int, ...]  # seqs of the MessageAccepted events removed
    peer: str

    def accounts(self) -> tuple[str, ...]:
        return (self.account,)


# --- refusals worth auditing (bounded per connection by the servers) ----------


class RecipientRefused(Event, frozen=True, kw_only=True):
    address: str
    reason: str  # the reply sent, e.g. "550 5.1.1 ..."
    mail_from: str
    peer: str
    helo: str


class MessageRefused(Event, frozen=True, kw_only=True):
    reason: str  # the reply sent, e.g. "552 5.3.4 ..."
    mail_from: str
    recipients: tuple[str, ...]  # local account names the message was for
    size: int  # octets received before refusal (drained bytes included)
    peer: str
    helo: str

    def accounts(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.recipients)))


class AuthenticationFailed(Event, frozen=True, kw_only=True):
    protocol: str  # "pop3" or "smtp"
    user: str  # the name the client tried (may not exist)
    peer: str

    def accounts(self) -> tuple[str, ...]:
        return ()


AnyEvent = (
    AccountCreated
    | PasswordChanged
    | AccountRemoved
    | MessageAccepted
    | MailboxFetched
    | MailboxReset
    | RecipientRefused
    | MessageRefused
    | AuthenticationFailed
)

EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        AccountCreated,
        PasswordChanged,
        AccountRemoved,
        MessageAccepted,
        MailboxFetched,
        MailboxReset,
        RecipientRefused,
        MessageRefused,
        AuthenticationFailed,
    )
}

_encoder = msgspec.json.Encoder(order="deterministic")
_decoder: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)


def encode(event: Event) -> bytes:
    """The canonical JSON encoding of an event (hashed by the chain)."""
    return _encoder.encode(event)


def decode(payload: bytes | str) -> Event:
    """Decode a stored payload back into its event type."""
    return _decoder.decode(payload)


def type_name(event: Event) -> str:
    return type(event).__name__
