"""eventmail: an event-sourced SMTP/POP3 mail server (the write side)."""

__version__ = "0.1.0"
