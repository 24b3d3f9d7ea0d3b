"""The one-page HTML report: a Jinja2 template filled with what the stages wrote.

Self-contained: every image is embedded as a base64 ``data:`` URI and the page loads
nothing from the network, so it can be mailed or attached as it is. This module only
renders; the report stage gathers the numbers, plots and provenance it shows.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

TEMPLATE = "report.html.j2"
MIME = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg"}


def data_uri(path: Path) -> str:
    """The file as a ``data:`` URI, so the page needs nothing beside itself."""
    path = Path(path)
    mime = MIME.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def number(value: Any, err: Any = None) -> str:
    """A table cell: ``x ± err`` when the error is known, '-' for a missing value."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if not isinstance(value, int | float):
        return str(value)
    text = f"{value:g}" if abs(value) >= 100 or value == int(value) else f"{value:.4g}"
    if err is None or (isinstance(err, float) and math.isnan(err)):
        return text
    return f"{text} ± {err:.2g}"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("pnn.show", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]),
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["number"] = number
    return env


def render(context: Mapping[str, Any]) -> str:
    """The report page for ``context`` (see the template for the keys it reads)."""
    return _environment().get_template(TEMPLATE).render(**context)
