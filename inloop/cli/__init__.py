"""The ``inloop`` command line (Typer + Rich); the app lives in :mod:`inloop.cli.main`."""
