"""`python -m graphc ...`: the `graphc` command (graphc/cli.py)."""
import sys

from graphc.cli import main

sys.exit(main())
