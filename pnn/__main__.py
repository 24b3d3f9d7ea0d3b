"""``python -m pnn``: the command line, run with this interpreter (used by batch jobs)."""

from pnn.cli import main

main(prog_name="pnn")
