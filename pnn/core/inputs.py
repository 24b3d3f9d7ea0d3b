"""Input file names: local paths and shell globs, and ``root://`` URLs served over XRootD.

A URL is never treated as a path: it is not joined, resolved or globbed by the local file
system. A remote glob is expanded with the server's own directory listing, and every remote
request has an explicit timeout, so a dead or unreachable server fails within seconds with
one line instead of hanging. The XRootD client (the optional ``pnn[xrootd]`` extra) is
imported only when a URL is met.
"""

from __future__ import annotations

import fnmatch
import glob
import importlib.util
import os
import re
import sys
from pathlib import Path
from typing import Any

from pnn.core.errors import PnnError

# root://host[:port]/path (and xroot://, roots://); the path of an absolute file starts with
# '/', so it reads root://host//store/file.root. '?' begins the URL's options, as in XRootD.
_URL = re.compile(r"^(?P<server>x?roots?://[^/?]+)/(?P<path>[^?]*)(?P<options>\?.*)?$",
                  re.IGNORECASE)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_MAGIC = re.compile(r"[*?[]")

# XRootD client settings pnn sets unless the matching XRD_* environment variable is set:
# a connection attempt gives up after ConnectionWindow seconds and is tried ConnectionRetry
# times in all; a request (open, stat, listing, read) after RequestTimeout seconds; a stream
# that stops answering after StreamTimeout. TimeoutResolution is how often the client checks.
CLIENT_SETTINGS = {"ConnectionWindow": 3, "ConnectionRetry": 2, "RequestTimeout": 30,
                   "StreamTimeout": 30, "TimeoutResolution": 1}
# XRootD's kXR_NotFound and kXR_NotAuthorized error numbers
_NOT_FOUND, _NOT_AUTHORIZED = 3011, 3010
_configured: list[Any] = []


def is_remote(path: str | Path) -> bool:
    """Whether ``path`` is a URL (``root://...``) rather than a local path."""
    return isinstance(path, str) and _SCHEME.match(path) is not None


def _split(url: str) -> tuple[str, str, str]:
    """(server, path, options) of a ``root://`` URL, or a one-line error for another URL."""
    found = _URL.match(url)
    if found is None:
        raise PnnError(f"'{url}' is not a file URL pnn can read: give a local path or an XRootD "
                       "URL like root://host.domain//path/file.root")
    return found["server"], found["path"], found["options"] or ""


def client():
    """The XRootD client module, with pnn's timeouts set (once); one line if not installed."""
    if _configured:
        return _configured[0]
    if "tensorflow" in sys.modules and "XRootD.client" not in sys.modules:
        raise PnnError("the XRootD client cannot load once TensorFlow is loaded (it would crash "
                       "the process): import pnn before tensorflow or keras in your script")
    try:
        from XRootD import client as xrd
    except ImportError:
        raise PnnError("reading root:// URLs needs the XRootD client: install it with "
                       "pip install 'pnn[xrootd]'") from None
    for key, value in CLIENT_SETTINGS.items():
        if f"XRD_{key.upper()}" not in os.environ:
            xrd.EnvPutInt(key, value)
    _configured.append(xrd)
    return xrd


def load_before_tensorflow() -> None:
    """Load the XRootD client now when it is installed: loaded after TensorFlow, its bundled
    libraries crash the process (xrootd 6 with TensorFlow 2.21), so modules that import
    TensorFlow call this first."""
    if (not _configured and "tensorflow" not in sys.modules
            and importlib.util.find_spec("XRootD") is not None):
        client()


def timeout() -> int:
    """Seconds one remote request may take (XRD_REQUESTTIMEOUT, or pnn's default)."""
    try:
        return max(1, int(os.environ.get("XRD_REQUESTTIMEOUT", "")))
    except ValueError:
        return CLIENT_SETTINGS["RequestTimeout"]


def failure(url: str, status: Any) -> PnnError:
    """One line for a failed XRootD request on ``url`` (an ``XRootDStatus``)."""
    server = _split(url)[0]
    message = " ".join(str(status.message).split()) or f"status {status.code}"
    if getattr(status, "errno", 0) == _NOT_AUTHORIZED:
        return PnnError(f"the XRootD server refuses '{url}' ({message}): check your grid "
                        "proxy or token and the file's permissions")
    if status.fatal or status.code in (103, 108, 206):  # socket timeout, connection, expired
        return PnnError(f"cannot reach the XRootD server {server} for '{url}' ({message}): "
                        "check the host, the port and the network (slow server: raise "
                        "XRD_CONNECTIONWINDOW or XRD_REQUESTTIMEOUT)")
    return PnnError(f"the XRootD server {server} fails on '{url}' ({message}): check the URL "
                    "and the server")


def _filesystem(server: str):
    return client().FileSystem(server)


def _listing(fs, server: str, directory: str, options: str) -> list[tuple[str, bool]]:
    """(name, is directory) of each entry of a remote directory ([] if it does not exist)."""
    from XRootD.client.flags import DirListFlags, StatInfoFlags

    status, found = fs.dirlist(directory or "/", DirListFlags.STAT, timeout=timeout())
    if not status.ok:
        if getattr(status, "errno", 0) == _NOT_FOUND:
            return []
        url = f"{server}/{directory}{options}"
        if status.fatal or getattr(status, "errno", 0) == _NOT_AUTHORIZED:
            raise failure(url, status)
        raise PnnError(f"the XRootD server {server} cannot list '{directory}' "
                       f"({' '.join(str(status.message).split())}): give the files one by one "
                       "instead of a glob")
    return [(e.name, bool(e.statinfo is not None and e.statinfo.flags & StatInfoFlags.IS_DIR))
            for e in found]


def _remote_exists(fs, url: str, path: str) -> bool:
    from XRootD.client.flags import StatInfoFlags

    status, info = fs.stat(path, timeout=timeout())
    if not status.ok:
        if getattr(status, "errno", 0) == _NOT_FOUND:
            return False
        raise failure(url, status)
    if info.flags & StatInfoFlags.IS_DIR:
        raise PnnError(f"'{url}' is a directory on the server: give the files in it, e.g. "
                       f"{url.rstrip('/')}/*.root")
    return True


def _remote_expand(pattern: str) -> list[str]:
    server, path, options = _split(pattern)
    fs = _filesystem(server)
    if not _MAGIC.search(path):
        return [pattern] if _remote_exists(fs, pattern, path) else []
    parts = path.split("/")
    first = next(i for i, p in enumerate(parts) if _MAGIC.search(p))
    found = ["/".join(parts[:first])]
    for i in range(first, len(parts)):
        last = i == len(parts) - 1
        matches = []
        for directory in found:
            for name, is_dir in _listing(fs, server, directory, options):
                hidden = name.startswith(".") and not parts[i].startswith(".")
                if not hidden and is_dir != last and fnmatch.fnmatchcase(name, parts[i]):
                    matches.append(f"{directory}/{name}")
        found = matches
    return [f"{server}/{p}{options}" for p in sorted(found)]


def expand(pattern: str) -> list[str]:
    """The existing files that a path, a shell glob or a ``root://`` URL (glob) names, sorted;
    [] when none. A remote glob needs a server that lists directories."""
    if is_remote(pattern):
        return _remote_expand(pattern)
    return sorted(glob.glob(pattern))


def absolute(path: str) -> str:
    """``path`` resolved against the working directory; a URL as it is."""
    return path if is_remote(path) else str(Path(path).resolve())


def identity(path: str) -> str:
    """One spelling per file, to tell two names of one file apart from two files: the real
    path of a local file, a URL as it is."""
    return path if is_remote(path) else os.path.realpath(path)
