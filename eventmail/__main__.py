"""``python -m eventmail`` runs the command line."""

from eventmail.cli import main

main()
