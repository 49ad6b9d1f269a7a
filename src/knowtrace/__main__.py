"""``python -m knowtrace`` runs the command line."""

from knowtrace.cli.app import main

main()
