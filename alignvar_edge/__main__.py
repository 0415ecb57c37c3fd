"""`python -m alignvar_edge ...`: the CLI where the console script is not installed (a checkout on
a lent machine, run with PYTHONPATH=.)."""
import sys

from alignvar_edge.cli import main

sys.exit(main())
