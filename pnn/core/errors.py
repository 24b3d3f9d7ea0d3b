"""User-facing errors: anything the analyst can fix by changing input raises :class:`PnnError`.

The CLI turns a ``PnnError`` into one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations


class PnnError(Exception):
    """Bad input (config, file, tree, branch, selection, mass) with a message that says the fix."""
