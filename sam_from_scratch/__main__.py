"""`python -m sam_from_scratch`: the command line (cli.py)."""

import sys

from .cli import main

sys.exit(main(prog="python -m sam_from_scratch"))
