"""The command line: the command table in :mod:`diskkit.cli.commands`, one module per command,
parsed and dispatched by :mod:`diskkit.cli.main`."""
