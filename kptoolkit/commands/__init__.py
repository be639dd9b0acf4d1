"""Subcommands of the `kptoolkit` command line, one module each."""
