"""`python -m alignvar_edge ...`: the CLI where the console script is not installed (a checkout on
a lent machine, run with PYTHONPATH=.)."""
from alignvar_edge.cli import run_as_program

run_as_program()
