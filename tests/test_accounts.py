"""Accounts: the name rule, scrypt hashes, the fold and its commands."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventmail import accounts as accounts_module
from eventmail.accounts import (
    DUMMY_HASH,
    AccountError,
    Accounts,
    hash_password,
    validate_name,
    validate_password,
    verify_password,
)
from eventmail.events import AccountCreated, AccountRemoved, MailboxFetched, PasswordChanged
from eventmail.store import Append, MemoryLog

VALID_NAMES = [
    "a",
    "0",
    "jjordan",
    "j.jordan",
    "j_jordan",
    "j-jordan",
    "a..b",
    "a-",
    "9lives",
    "a" * 64,
    "a" + "-" * 63,
]

INVALID_NAMES = [
    "",
    "a" * 65,
    "../x",
    "..",
    ".",
    "a/b",
    "a\\b",
    ".hidden",
    "-dash",
    "_under",
    "JJordan",
    "jJordan",
    "jordan@localhost",
    "j jordan",
    " jjordan",
    "jjordan ",
    "jjordan\n",
    "jjordan\x00",
    "jörg",
    "ｊjordan",  # fullwidth
    "a+b",
]


@pytest.mark.parametrize("name", VALID_NAMES)
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(AccountError, match="invalid account name") as info:
        validate_name(name)
    assert "\n" not in str(info.value)


def test_long_invalid_name_is_shortened_in_the_message() -> None:
    with pytest.raises(AccountError) as info:
        validate_name("X" * 500)
    assert len(str(info.value)) < 300


@pytest.mark.parametrize("password", ["", "a\nb", "a\rb", "a\0b", "x" * 1025, "é" * 513])
def test_invalid_passwords_are_refused(password: str) -> None:
    with pytest.raises(AccountError):
        validate_password(password)


@pytest.mark.parametrize("password", ["p", "x" * 1024, "pässwörd ☃", " spaces  inside "])
def test_valid_passwords(password: str) -> None:
    assert validate_password(password) == password


# --- hashes ------------------------------------------------------------------------------


def test_hash_format_and_per_account_salt() -> None:
    first = hash_password("secret")
    second = hash_password("secret")
    assert first != second  # a fresh random salt each time
    for stored in (first, second):
        scheme, n, r, p, salt, digest = stored.split("$")
        assert (scheme, n, r, p) == (
            "scrypt",
            str(accounts_module.SCRYPT_N),
            str(accounts_module.SCRYPT_R),
            str(accounts_module.SCRYPT_P),
        )
        assert len(base64.b64decode(salt, validate=True)) == 16
        assert len(base64.b64decode(digest, validate=True)) == 32
        assert "secret" not in stored
    assert first.split("$")[4] != second.split("$")[4]
    assert verify_password("secret", first)
    assert verify_password("secret", second)


def test_the_same_salt_gives_the_same_hash() -> None:
    salt = b"0123456789abcdef"
    assert hash_password("pw", salt=salt) == hash_password("pw", salt=salt)
    assert hash_password("pw", salt=salt) != hash_password("pw2", salt=salt)


def test_wrong_password_fails() -> None:
    stored = hash_password("correct horse")
    assert not verify_password("correct hors", stored)
    assert not verify_password("Correct horse", stored)
    assert not verify_password("", stored)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "plain",
        "scrypt",
        "scrypt$16384$8$1$c2FsdA==",  # too few parts
        "scrypt$16384$8$1$c2FsdA==$aGFzaA==$extra",  # too many parts
        "bcrypt$16384$8$1$c2FsdA==$aGFzaA==",  # another scheme
        "scrypt$x$8$1$c2FsdA==$aGFzaA==",  # n not a number
        "scrypt$1000$8$1$c2FsdA==$aGFzaA==",  # n not a power of two
        "scrypt$16384$8$1$!!!$aGFzaA==",  # salt not base64
        "scrypt$16384$8$1$c2FsdA==$???",  # digest not base64
        "scrypt$16384$8$1$c2FsdA==$",  # empty digest
        "scrypt$16384$0$1$c2FsdA==$aGFzaA==",  # r out of range
        "scrypt$1099511627776$8$1$c2FsdA==$aGFzaA==",  # absurd memory cost
        "scrypt$16384$8$1000000$c2FsdA==$aGFzaA==",  # absurd time cost (hours)
        "scrypt$16384$100000$1$c2FsdA==$aGFzaA==",  # absurd block size
        "scrypt$16384$8$1$c2FsdA==$aGFzaA=",  # bad base64 padding
        "scrypt$-16384$8$1$c2FsdA==$aGFzaA==",  # negative cost
    ],
)
def test_malformed_hash_fails_safely(stored: str) -> None:
    assert verify_password("anything", stored) is False


# --- the fold -------------------------------------------------------------------------------


@pytest.fixture
def cheap_scrypt(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fold tests hash many passwords: use a tiny cost (the format stays the same)."""
    monkeypatch.setattr(accounts_module, "SCRYPT_N", 16)
    yield


def test_fold_create_passwd_remove_recreate(cheap_scrypt: None) -> None:
    accounts = Accounts()
    created = accounts.create("ann", "one")
    assert isinstance(created, AccountCreated) and created.name == "ann"
    assert "ann" not in accounts  # a command returns an event; applying it changes state
    accounts.apply(created)
    assert "ann" in accounts and accounts.names() == ["ann"]
    assert accounts.check_password("ann", "one")

    changed = accounts.change_password("ann", "two")
    assert isinstance(changed, PasswordChanged)
    accounts.apply(changed)
    assert accounts.check_password("ann", "two")
    assert not accounts.check_password("ann", "one")

    removed = accounts.remove("ann")
    assert removed == AccountRemoved(name="ann")
    accounts.apply(removed)
    assert "ann" not in accounts and accounts.names() == []
    assert not accounts.check_password("ann", "two")

    again = accounts.create("ann", "three")
    accounts.apply(again)
    assert accounts.check_password("ann", "three")
    assert not accounts.check_password("ann", "two")


def test_commands_refuse_duplicates_and_missing_accounts(cheap_scrypt: None) -> None:
    accounts = Accounts()
    accounts.apply(accounts.create("ann", "pw"))
    with pytest.raises(AccountError, match="already exists"):
        accounts.create("ann", "pw")
    with pytest.raises(AccountError, match="no account"):
        accounts.change_password("bob", "pw")
    with pytest.raises(AccountError, match="no account"):
        accounts.remove("bob")
    with pytest.raises(AccountError, match="invalid account name"):
        accounts.create("../etc", "pw")
    with pytest.raises(AccountError, match="invalid account name"):
        accounts.remove("ANN")
    with pytest.raises(AccountError):
        accounts.create("carol", "")
    accounts.apply(accounts.remove("ann"))
    with pytest.raises(AccountError, match="no account"):
        accounts.remove("ann")
    assert accounts.names() == []


def test_unknown_account_fails_the_password_check() -> None:
    accounts = Accounts()
    assert not accounts.check_password("nobody", "not a real password")


def test_fold_from_a_log_catches_up_incrementally(cheap_scrypt: None) -> None:
    log = MemoryLog()
    writer = Accounts()
    ann = writer.create("ann", "pw")
    writer.apply(ann)
    log.append(
        [
            Append(ann),
            Append(
                MailboxFetched(account="ann", message_seq=1, uidl="u", command="RETR", peer="p")
            ),
        ]
    )
    reader = Accounts()
    reader.catch_up(log)
    assert reader.names() == ["ann"] and reader.last_seq == 2
    bob = writer.create("bob", "pw")
    log.append([Append(bob), Append(writer.remove("ann"))])
    reader.catch_up(log)
    assert reader.names() == ["bob"] and reader.last_seq == 4
    reader.catch_up(log)  # nothing new
    assert reader.names() == ["bob"] and reader.last_seq == 4
    assert reader.check_password("bob", "pw")


# --- property: the fold equals a dict model ------------------------------------------------

names = st.sampled_from(["ann", "bob", "c.d", "e-f", "g_9"])
passwords = st.text(
    alphabet=st.characters(blacklist_characters="\r\n\0", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=12,
)
commands = st.lists(
    st.one_of(
        st.tuples(st.just("create"), names, passwords),
        st.tuples(st.just("passwd"), names, passwords),
        st.tuples(st.just("remove"), names, st.none()),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(script=commands)
def test_fold_equals_a_dict_model(script: list[tuple[str, str, str | None]]) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(accounts_module, "SCRYPT_N", 16)
        accounts = Accounts()
        model: dict[str, str] = {}
        log: list = []
        for command, name, password in script:
            valid = (name not in model) if command == "create" else (name in model)
            if not valid:
                with pytest.raises(AccountError):
                    run(accounts, command, name, password)
                continue
            event = run(accounts, command, name, password)
            accounts.apply(event)
            log.append(event)
            if command == "remove":
                del model[name]
            else:
                assert password is not None
                model[name] = password
        assert accounts.names() == sorted(model)
        for name, password in model.items():
            assert accounts.check_password(name, password)
        # The same events folded afresh give the same accounts.
        replayed = Accounts()
        for event in log:
            replayed.apply(event)
        assert replayed.names() == accounts.names()


def run(accounts: Accounts, command: str, name: str, password: str | None):  # type: ignore[no-untyped-def]
    if command == "create":
        assert password is not None
        return accounts.create(name, password)
    if command == "passwd":
        assert password is not None
        return accounts.change_password(name, password)
    return accounts.remove(name)


class _LogThatGrowsBetweenReads(MemoryLog):
    """Another writer appends right after the fold reads the head."""

    def __init__(self) -> None:
        super().__init__()
        self.intruder: AccountCreated | None = None

    def head(self):  # type: ignore[no-untyped-def]
        head = super().head()
        if self.intruder is not None:
            intruder, self.intruder = self.intruder, None
            self.append([Append(intruder)])
        return head


def test_catch_up_never_skips_an_event_committed_while_it_reads() -> None:
    log = _LogThatGrowsBetweenReads()
    log.append([Append(AccountCreated(name="first", password_hash=DUMMY_HASH))])
    log.intruder = AccountCreated(name="second", password_hash=DUMMY_HASH)
    fold = Accounts()
    fold.catch_up(log)
    assert fold.names() == ["first"]
    fold.catch_up(log)
    assert fold.names() == ["first", "second"]
