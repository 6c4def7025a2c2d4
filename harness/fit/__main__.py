"""`python -m harness.fit`: the fitting stage's command line (harness/fit/cli.py)."""

from __future__ import annotations

import sys

from harness.fit.cli import main

if __name__ == "__main__":
    sys.exit(main())
