"""mboxrd quoting and the spool entry format: properties over arbitrary bytes."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from projections.spoolformat import (
    PreparedMessage,
    crlf_to_lf,
    delivery_body,
    delivery_header,
    from_line,
    pop3_message,
    pop3_octets,
    quote_body,
    spool_entry,
    unquote_body,
)

# Lines built from the pieces that matter for quoting, plus arbitrary bytes.
LINE = st.lists(
    st.sampled_from([b"From ", b">", b"From", b" ", b"x", b"\r", b"\xff", b".", b"F"]), max_size=6
).map(b"".join) | st.binary(max_size=12)
TEXT = st.lists(LINE, max_size=10).map(b"\n".join)

REFERENCE_QUOTE = re.compile(rb"^(>*From )", re.MULTILINE)
REFERENCE_UNQUOTE = re.compile(rb"^>(>*From )", re.MULTILINE)


@given(TEXT)
def test_quoting_matches_the_mboxrd_rule_and_unquoting_inverts_it(text: bytes) -> None:
    quoted = quote_body(text)
    assert quoted == REFERENCE_QUOTE.sub(rb">\1", text)
    assert unquote_body(quoted) == text
    assert unquote_body(text) == REFERENCE_UNQUOTE.sub(rb"\1", text)
    assert not re.search(rb"(?m)^From ", quoted)


@given(TEXT, st.sampled_from(["", "a@b", "x y@z"]))
def test_pop3_octets_is_the_size_pop3_sends(text: bytes, sender: str) -> None:
    message = text.replace(b"\n", b"\r\n")
    moment = datetime(2026, 11, 29, tzinfo=UTC)
    entry = spool_entry(mail_from=sender, ts=moment, delivered_to="a@l", message_crlf=message)
    body = delivery_body(mail_from=sender, delivered_to="a@l", message_crlf=message)
    assert pop3_octets(body) == len(pop3_message(entry))
    assert pop3_message(entry) == body.replace(b"\n", b"\r\n")
    assert entry.endswith(b"\n\n")
    assert entry.count(b"\nFrom ") == 0
    assert entry == from_line(sender, moment) + quote_body(body) + b"\n"


@given(TEXT, st.sampled_from(["", "a@b", "x\nFrom y@z"]), st.sampled_from(["a@l", "\n>From b"]))
def test_a_prepared_message_gives_the_same_entry_for_every_recipient(
    text: bytes, sender: str, rcpt: str
) -> None:
    message = text.replace(b"\n", b"\r\n")
    moment = datetime(2026, 11, 29, tzinfo=UTC)
    prepared = PreparedMessage.of(message)
    entry, octets = prepared.entry(from_line(sender, moment), delivery_header(sender, rcpt))
    assert entry == spool_entry(
        mail_from=sender, ts=moment, delivered_to=rcpt, message_crlf=message
    )
    assert octets == len(pop3_message(entry))
    parts, length, _ = prepared.entry_parts(
        from_line(sender, moment), delivery_header(sender, rcpt)
    )
    assert length == len(entry) == len(b"".join(parts))


@given(st.binary(max_size=40) | TEXT.map(lambda t: t.replace(b"\n", b"\r\n")))
def test_crlf_to_lf_is_replace(data: bytes) -> None:
    assert crlf_to_lf(data) == data.replace(b"\r\n", b"\n")
