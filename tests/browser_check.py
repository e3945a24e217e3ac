"""Headless Chromium helpers shared by the HTML-report tests (inspect and eval reports).

Chromium comes from Debian's package (`apt-get install -y chromium`, done by `make test`). Where
it is missing the browser tests skip, except under CI (CI=true), where they fail so CI never
skips silently. Imported by the tests as `browser_check` (tests/conftest.py puts this folder on
sys.path).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

MARK_CLASSES = {"bar", "dot", "curve", "rug"}
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=2000",
]


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a Chromium binary (PREFSMITH_CHROMIUM overrides the search)."""
    found = os.environ.get("PREFSMITH_CHROMIUM") or next(
        (
            p
            for name in ("chromium", "chromium-browser", "google-chrome")
            if (p := shutil.which(name))
        ),
        None,
    )
    if found is None:
        message = (
            "Chromium not installed (apt-get install -y chromium): headless report test not run"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def run_chromium(binary: str, page: Path, *args: str) -> subprocess.CompletedProcess:
    """Run headless Chromium on a local file with a throw-away profile."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [
            binary,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            *args,
            page.resolve().as_uri(),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def console_messages(stderr: str) -> list[str]:
    """Page console messages from `--enable-logging=stderr` output (`...:CONSOLE(...)] "msg"`)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


class ReportDom(HTMLParser):
    """Collects each svg.chart (data-points, data-title, number of data marks) and #console-errors."""

    def __init__(self):
        super().__init__()
        self.charts: list[dict] = []
        self.errors: dict | None = None
        self._in_chart = self._in_errors = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = set((attrs.get("class") or "").split())
        if tag == "svg" and "chart" in classes:
            self.charts.append(
                {"points": int(attrs["data-points"]), "title": attrs.get("data-title"), "marks": 0}
            )
            self._in_chart = True
        elif self._in_chart and classes & MARK_CLASSES:
            self.charts[-1]["marks"] += 1
        if attrs.get("id") == "console-errors":
            self.errors, self._in_errors = {"count": int(attrs["data-count"]), "text": ""}, True

    def handle_endtag(self, tag):
        self._in_chart = self._in_chart and tag != "svg"
        self._in_errors = self._in_errors and tag != "pre"

    def handle_data(self, data):
        if self._in_errors:
            self.errors["text"] += data


def parse(page: str) -> ReportDom:
    dom = ReportDom()
    dom.feed(page)
    return dom


ARTIFACTS = Path(__file__).resolve().parent / "artifacts"  # screenshots kept for people to look at


def check_page_in_chromium(
    binary: str, page: Path, *, screenshot: str, size: tuple[int, int]
) -> list[dict]:
    """Open `page` in headless Chromium and assert what a reader would see: no script error, no
    console message, every chart the HTML declares built by the browser with points and marks;
    then save a `size` screenshot as tests/artifacts/<screenshot> and check it is a real PNG of
    that size with content. Returns the charts the browser built."""
    import struct

    done = run_chromium(binary, page, "--enable-logging=stderr", "--v=0", "--dump-dom")
    dom = parse(done.stdout)
    assert dom.errors == {"count": 0, "text": ""}, dom.errors
    assert console_messages(done.stderr) == []
    expected = [c["title"] for c in parse(page.read_text(encoding="utf-8")).charts]
    assert [c["title"] for c in dom.charts] == expected  # the browser built every chart
    assert [c for c in dom.charts if c["points"] == 0 or c["marks"] == 0] == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / screenshot
    shot.unlink(missing_ok=True)
    run_chromium(binary, page, f"--screenshot={shot}", f"--window-size={size[0]},{size[1]}")
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", header[16:24]) == size
    assert shot.stat().st_size > 50_000  # a blank page compresses to a few kB
    return dom.charts
