"""POP3: the sans-IO session core (protocol), its Trio shell (server) and the backend seam."""
