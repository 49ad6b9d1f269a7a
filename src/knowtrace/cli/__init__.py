"""The ``knowtrace`` command: parses arguments, calls the packages, prints results."""
