"""Rewrite the config reference table in README.md from the config schema."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from pnn.core.config import reference_markdown

START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def main() -> int:
    readme = Path(__file__).resolve().parents[1] / "README.md"
    text = readme.read_text()
    block = f"{START}\n{reference_markdown()}\n{END}"
    new = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
