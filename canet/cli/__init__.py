"""Command-line interface of canet (see :mod:`canet.cli.main`)."""
