"""Keep TensorFlow's native start-up noise off the terminal unless the user asks for it.

TensorFlow writes lines such as "All log messages before absl::InitializeLog() is called are
written to STDERR" and "Could not find cuda drivers" from C++ straight to file descriptor 2
while it is imported, before any log level is read, and some of them twice. Python's
``logging`` cannot reach them, so :func:`silence_native_logs` sets the log-level variables for
the lines that honour them and installs an import hook that points descriptor 2 at a temporary
file for the duration of the first ``import tensorflow`` only. Commands that never need
TensorFlow never import it, and pnn's own log lines are written outside that window, so they
still reach stderr. If the import fails, whatever was captured is shown with the error.

``TF_ENABLE_ONEDNN_OPTS`` is deliberately left alone: it changes numerics, not verbosity.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

#: Set for child processes (batch tasks, study workers) so they can stay quiet as well.
INHERIT_VARIABLE = "PNN_QUIET_NATIVE"

#: Native log levels: 3 keeps only fatal messages of TensorFlow's C++ logging (absl/glog).
LOG_LEVEL_VARIABLES = {"TF_CPP_MIN_LOG_LEVEL": "3", "GLOG_minloglevel": "3"}

QUIET_MODULE = "tensorflow"


@contextlib.contextmanager
def captured_stderr_fd() -> Iterator[None]:
    """Point file descriptor 2 at a temporary file for the block.

    What native code writes there is dropped when the block succeeds and written to the real
    stderr when it raises, so a failed import still explains itself.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            except BaseException:
                sys.stderr.flush()
                os.dup2(saved, 2)
                sink.seek(0)
                captured = sink.read()
                if captured:
                    os.write(2, captured)
                raise
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)


class _QuietLoader(importlib.abc.Loader):
    """Wraps the real loader of ``tensorflow``: runs the package body with stderr captured."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        with captured_stderr_fd():
            self._loader.exec_module(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _QuietImportFinder(importlib.abc.MetaPathFinder):
    """One-shot finder: the first import of ``tensorflow`` gets a loader that hides its noise."""

    def find_spec(self, fullname: str, path: Any = None, target: ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname != QUIET_MODULE:
            return None
        remove_hook()  # later imports (and the search below) use the ordinary finders
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _QuietLoader(spec.loader)
        return spec


def remove_hook() -> None:
    """Let the next ``import tensorflow`` write to stderr again (the hook is one-shot anyway)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QuietImportFinder)]


def hook_installed() -> bool:
    """True while the first ``import tensorflow`` is still to be silenced."""
    return any(isinstance(f, _QuietImportFinder) for f in sys.meta_path)


def silence_native_logs() -> None:
    """Hide TensorFlow's native start-up and runtime log lines for this process and its children.

    Sets the native log levels (a value the user already exported is kept) and, unless
    TensorFlow is already imported, installs the import hook. Safe to call more than once.
    """
    for name, value in LOG_LEVEL_VARIABLES.items():
        os.environ.setdefault(name, value)
    os.environ[INHERIT_VARIABLE] = "1"
    if QUIET_MODULE in sys.modules or hook_installed():
        return
    sys.meta_path.insert(0, _QuietImportFinder())
    log.debug("native TensorFlow log lines are hidden (use -v to see them)")


def inherit() -> None:
    """In a child process (e.g. a worker), stay quiet if the parent was."""
    if os.environ.get(INHERIT_VARIABLE) == "1":
        silence_native_logs()
