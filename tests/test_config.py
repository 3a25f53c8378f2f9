"""The shipped example configuration documents exactly the defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventmail import config

EXAMPLE = Path(__file__).resolve().parent.parent / "data" / "eventmail.toml.example"


def test_example_config_lists_every_default() -> None:
    loaded = config.load(Path("unused"), EXAMPLE)
    assert loaded == config.Config()
    text = EXAMPLE.read_text()
    for section in ("smtp", "pop3", "log"):
        for field in getattr(config.Config(), section).__struct_fields__:
            assert f"\n{field} = " in text, f"[{section}] {field} is not documented"


def test_missing_config_file_means_defaults(tmp_path: Path) -> None:
    assert config.load(tmp_path) == config.Config()


@pytest.mark.parametrize(
    "text",
    ["[smtp]\nmax_recipients = 'many'\n", "[smtp]\nmax_recipient = 5\n", "not toml ["],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, text: str) -> None:
    (tmp_path / "eventmail.toml").write_text(text)
    with pytest.raises(config.ConfigError, match="invalid config"):
        config.load(tmp_path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:25", ("127.0.0.1", 25)), ("[::1]:110", ("::1", 110)), ("0", ("127.0.0.1", 0))],
)
def test_parse_hostport(text: str, expected: tuple[str, int]) -> None:
    assert config.parse_hostport(text) == expected


@pytest.mark.parametrize("text", ["host:", "host:99999", "host:x"])
def test_parse_hostport_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="invalid address"):
        config.parse_hostport(text)
