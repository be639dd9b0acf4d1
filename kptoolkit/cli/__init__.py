"""The `kptoolkit` command line: one module per command, `main` the entry point."""

from kptoolkit.cli.main import main

__all__ = ["main"]
