"""Configuration: ``DIR/eventmail.toml`` (or ``--config FILE``), typed by msgspec.

Every knob has a default, so the file is optional; unknown keys are refused so
a typo never silently does nothing. Only the composition roots (CLI, serve)
load it.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

DEFAULT_DATA_DIR = "data"
CONFIG_NAME = "eventmail.toml"


class SmtpConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    listen: str = "127.0.0.1:2525"
    domains: list[str] = msgspec.field(default_factory=lambda: ["localhost"])
    hostname: str = ""  # name in the greeting and Received:; "" means the machine's name
    max_message_size: int = 10 * 1024 * 1024  # octets, advertised as SIZE
    max_recipients: int = 100
    max_command_line: int = 512  # octets including CRLF (RFC 5321 4.5.3.1.4)
    max_text_line: int = 1000  # octets including CRLF (RFC 5321 4.5.3.1.6)
    command_timeout: float = 300.0  # RFC 5321 4.5.3.2: 5 minutes per command
    data_block_timeout: float = 180.0  # 3 minutes between data blocks
    idle_timeout: float = 300.0  # no command at all: 421 and close
    max_connections: int = 2000
    error_budget: int = 10  # bad commands before 421 and close
    max_audited_refusals: int = 5  # refusal events recorded per connection
    shutdown_grace: float = 10.0  # seconds in-flight DATA may take on SIGTERM


class Pop3Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    listen: str = "127.0.0.1:1110"
    idle_timeout: float = 600.0  # RFC 1939: at least 10 minutes
    max_command_line: int = 512
    max_connections: int = 500
    error_budget: int = 10
    plaintext_auth: str = "loopback"  # "always", "loopback" or "never" (without TLS)
    max_audited_failures: int = 5  # AuthenticationFailed events per connection
    login_delay_base: float = 0.5  # seconds, doubled per failure from the same peer
    login_delay_max: float = 8.0


class LogConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    busy_timeout: float = 5.0  # seconds waiting for another writer before 451
    max_batch: int = 512  # events per group-commit transaction
    poll_interval: float = 0.25  # seconds between checks for other processes' appends


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    smtp: SmtpConfig = msgspec.field(default_factory=SmtpConfig)
    pop3: Pop3Config = msgspec.field(default_factory=Pop3Config)
    log: LogConfig = msgspec.field(default_factory=LogConfig)


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or invalid (one line)."""


def load(data: Path, config_file: Path | None = None) -> Config:
    """Read ``config_file``, else ``data/eventmail.toml`` if present, else defaults."""
    path = config_file if config_file is not None else data / CONFIG_NAME
    if config_file is None and not path.exists():
        return Config()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    try:
        return msgspec.toml.decode(raw, type=Config)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ConfigError(f"invalid config {path}: {exc}") from exc


def parse_hostport(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT``, ``[::1]:PORT`` or ``PORT``; raises ValueError with a clear message."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = default_host, text
    host = host.strip("[]") or default_host
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"invalid address {text!r}: expected HOST:PORT with a port 0-65535")
    return host, int(port)
