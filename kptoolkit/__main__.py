"""`python -m kptoolkit` (and `torchrun -m kptoolkit`) runs the command line."""

from kptoolkit.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
