"""report.html opened in a real headless Chromium: it renders, shows every summary row and
every image loads. Under CI=true Chromium is installed with apt-get when missing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from pnn.cli import main
from pnn.io import toy
from tests.conftest import toy_config, write_config

# Run after the page has loaded: records on <body> how many images there are and how many
# failed (not complete, or zero natural width).
PROBE = """<script>
window.addEventListener('load', function () {
  var images = Array.from(document.images);
  var broken = images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  document.body.setAttribute('data-images', images.length);
  document.body.setAttribute('data-broken', broken.length);
  document.body.setAttribute('data-summary-rows',
                             document.querySelectorAll('#summary-table tbody tr').length);
});
</script>"""


def chromium() -> str:
    """Debian's chromium, installed under CI when missing; elsewhere skip without it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI") != "true":
        pytest.skip("chromium is not installed (under CI=true the test installs it with apt-get)")
    subprocess.run(["apt-get", "update"], check=True, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-o", "DPkg::Lock::Timeout=600", "chromium"],
                   check=True, capture_output=True, env={**os.environ,
                                                         "DEBIAN_FRONTEND": "noninteractive"})
    found = shutil.which("chromium")
    assert found, "apt-get installed chromium but it is not on PATH"
    return found


def _browser(exe: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    # As root Chromium refuses to start without --no-sandbox; a fresh profile per call.
    return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu",
                           "--no-first-run", f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=90, check=False)


@pytest.fixture(scope="module")
def report_page(tmp_path_factory) -> Path:
    """report.html of a tiny toy run (ingest, train, inspect, evaluate, report)."""
    tmp = tmp_path_factory.mktemp("page")
    # few masses and features: every plot costs, and the page only needs one of each kind
    cfg = toy_config(tmp, masses=(500, 1000), offgrid=(750,), signal_events=300,
                     background_events=3000, epochs=1, features=["FourBodyMass", "sT", "Btag"],
                     plots={"experiment": "ATLAS", "label": "Simulation Internal"})
    g = cfg["generate"]
    toy.write(g["output"], g["masses"] + g["offgrid_masses"], g["signal_events"],
              g["background_events"], 140.0, cfg["seed"])
    path = write_config(tmp / "config.yaml", cfg)
    for verb in ("ingest", "train", "inspect", "evaluate", "report"):
        res = CliRunner().invoke(main, [verb, str(path)], catch_exceptions=False)
        assert res.exit_code == 0, res.output
    return tmp / "runs" / "small" / "report.html"


def test_report_page_is_self_contained(report_page: Path) -> None:
    html = report_page.read_text()
    sources = re.findall(r'<img src="([^"]*)"', html)
    assert len(sources) > 12 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing from the network
    for section in ("summary-table", "separation-table", "sanity-table", "training-table",
                    "provenance-table"):
        assert f'id="{section}"' in html
    assert "pnn inspect" not in html.split('id="inputs"')[1].split('id="sanity"')[0]


def test_report_page_renders_in_headless_chromium(report_page: Path, tmp_path: Path) -> None:
    exe = chromium()
    probe = tmp_path / "probe.html"
    probe.write_text(report_page.read_text().replace("</body>", PROBE + "</body>"))
    dom = _browser(exe, tmp_path / "profile-dom", "--virtual-time-budget=10000", "--dump-dom",
                   probe.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body, dom.stdout[:500]
    attrs = dict(re.findall(r'data-([a-z-]+)="(\d+)"', body.group(0)))
    assert int(attrs["images"]) > 12
    assert attrs["broken"] == "0"
    assert attrs["summary-rows"] == "3"  # 500, 750 (never trained on) and 1000 GeV
    rows = re.findall(r'<tr class="(trained|offgrid)" data-mass="([^"]+)"', dom.stdout)
    assert [m for _, m in rows] == ["500", "750", "1000"] and rows[1][0] == "offgrid"

    shot = tmp_path / "page.png"
    res = _browser(exe, tmp_path / "profile-shot", "--window-size=1280,2400",
                   f"--screenshot={shot}", report_page.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 50_000  # a blank page compresses to a few kB
