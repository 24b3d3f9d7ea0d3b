"""Imported first by the fork server that starts the worker processes of a command (see
:mod:`pnn.core.workers`).

The server imports the workers' heavy modules (numpy, pandas, TensorFlow, ...) once, and every
worker is forked from it with them already loaded. This module goes first so that the
server's TensorFlow import is as quiet as the command's own.
"""

from pnn.core.quiet import inherit

inherit()
