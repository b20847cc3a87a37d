"""The command line: one module per command, registered on the app in :mod:`diskkit.cli.app`."""
