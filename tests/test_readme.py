from pathlib import Path

from pnn.core.config import reference_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_readme_opens_with_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text().split("\n## ")[0]
    assert "make demo" in head and "make test" in head


def test_readme_config_reference_is_current() -> None:
    """Regenerate with: python scripts/config_reference.py"""
    assert reference_markdown() in (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()
