"""The look of every figure, from the config's ``plots`` section: the experiment label, the
centre-of-mass energy, the luminosity and the file formats.

Kept apart from the plotting code (no matplotlib here), so the command line can set the
style of a run before any stage draws, without slowing ``pnn --help``. Plot functions take
an explicit ``style``; without one they use the style set by :func:`use` (the command line
sets it from the config it loads), else the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from pnn.core.config import Config


@dataclass(frozen=True)
class Style:
    """What every figure carries. ``experiment`` is "ATLAS", "CMS" or "none"; ``com`` is in
    TeV and ``luminosity`` in fb^-1 (None leaves either out of the label)."""

    experiment: str = "none"
    label: str = "Simulation Internal"
    com: float | None = 13.6
    luminosity: float | None = None
    formats: tuple[str, ...] = ("png",)

    @classmethod
    def of(cls, cfg: Config) -> Style:
        """The style of a config: ``plots.luminosity`` overrides the top-level luminosity."""
        p = cfg.plots
        lumi = p.luminosity if p.luminosity is not None else cfg.luminosity
        return cls(p.experiment, p.label, p.com, lumi, tuple(p.formats))

    def right_label(self) -> str:
        """The text above the right edge of the axes, e.g. '140 fb$^{-1}$ (13.6 TeV)'."""
        parts = []
        if self.luminosity is not None:
            parts.append(f"{self.luminosity:g} fb$^{{-1}}$")
        if self.com is not None:
            parts.append(f"({self.com:g} TeV)" if parts else f"{self.com:g} TeV")
        return " ".join(parts)


_current = Style()


def use(style: Style) -> None:
    """Make ``style`` the one that plots drawn without an explicit style get."""
    global _current
    _current = style


def current() -> Style:
    """The style set by :func:`use` (the defaults until then)."""
    return _current
