"""SMTP receiving: a sans-IO protocol core (protocol.py) and its Trio shell (server.py)."""
