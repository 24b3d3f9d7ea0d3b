"""``python -m pnn``: the command line, run with this interpreter (used by batch jobs)."""

from pnn.cli import entry_point

entry_point(prog_name="pnn")
