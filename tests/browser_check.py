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

MARK_CLASSES = {"point", "js-line"}  # plotly: a bar or marker is .point, a line path .js-line
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


@pytest.fixture(scope="session", name="driver")
def chrome_driver():
    """Headless Chromium driven by Debian's chromedriver (make test installs both)."""
    if not (shutil.which("chromedriver") and shutil.which("chromium")):
        message = "chromium + chromium-driver not installed (apt-get install chromium-driver)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--disable-background-networking")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield browser
    browser.quit()


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
    """Collects each div.chart (data-points, data-title, whether plotly built it: class
    js-plotly-plot, and how many traces and data marks it drew) and #console-errors."""

    def __init__(self):
        super().__init__()
        self.charts: list[dict] = []
        self.errors: dict | None = None
        self._depth = 0  # open <div>s inside the current chart; 0: not in a chart
        self._in_errors = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = set((attrs.get("class") or "").split())
        if tag == "div" and "chart" in classes and not self._depth:
            self.charts.append(
                {
                    "points": int(attrs["data-points"]),
                    "title": attrs.get("data-title"),
                    "plotly": "js-plotly-plot" in classes,
                    "traces": 0,
                    "marks": 0,
                }
            )
        elif self._depth:
            self.charts[-1]["traces"] += "trace" in classes
            self.charts[-1]["marks"] += bool(classes & MARK_CLASSES)
        if tag == "div" and (self._depth or "chart" in classes):
            self._depth += 1
        if attrs.get("id") == "console-errors":
            self.errors, self._in_errors = {"count": int(attrs["data-count"]), "text": ""}, True

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)  # `<path .../>`: no end tag to count

    def handle_endtag(self, tag):
        if tag == "div" and self._depth:
            self._depth -= 1
        self._in_errors = self._in_errors and tag != "pre"

    def handle_data(self, data):
        if self._in_errors:
            self.errors["text"] += data


def chart_specs(page: str) -> dict[str, dict]:
    """The plotly figure (data, layout) of each chart of `page`, by its title, as the page
    embeds it for `Plotly.newPlot`."""
    import json
    import re

    specs = [
        json.loads(m) for m in re.findall(r"var spec = (\{.*?\}); Plotly\.newPlot", page, re.S)
    ]
    return {s["layout"]["title"]["text"]: s for s in specs}


def parse(page: str) -> ReportDom:
    dom = ReportDom()
    dom.feed(page)
    return dom


ARTIFACTS = Path(__file__).resolve().parent / "artifacts"  # screenshots kept for people to look at


def check_page_in_chromium(
    binary: str, page: Path, *, screenshot: str, size: tuple[int, int]
) -> list[dict]:
    """Open `page` in headless Chromium and assert what a reader would see: no script error, no
    console message, every div.chart the HTML declares built by plotly (class js-plotly-plot,
    traces and data marks) with data points;
    then save a `size` screenshot as tests/artifacts/<screenshot> and check it is a real PNG of
    that size with content. Returns the charts the browser built."""
    import struct

    done = run_chromium(binary, page, "--enable-logging=stderr", "--v=0", "--dump-dom")
    dom = parse(done.stdout)
    assert dom.errors == {"count": 0, "text": ""}, dom.errors
    assert console_messages(done.stderr) == []
    declared = parse(page.read_text(encoding="utf-8")).charts
    assert declared and not any(c["plotly"] or c["traces"] for c in declared)  # drawn by JS only
    assert [c["title"] for c in dom.charts] == [c["title"] for c in declared]
    unbuilt = [c for c in dom.charts if not c["plotly"] or c["traces"] == 0 or c["marks"] == 0]
    assert unbuilt == []  # plotly drew every chart, each with traces and data marks
    assert [c for c in dom.charts if c["points"] == 0] == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / screenshot
    shot.unlink(missing_ok=True)
    run_chromium(binary, page, f"--screenshot={shot}", f"--window-size={size[0]},{size[1]}")
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", header[16:24]) == size
    assert shot.stat().st_size > 50_000  # a blank page compresses to a few kB
    return dom.charts


def hover_text(driver, element, *, chart: str, timeout: float = 3.0) -> str | None:
    """Move the mouse onto `element` and return the hover label plotly shows in `chart` (a CSS
    selector of its div), or None when none appears within `timeout` seconds (plotly draws the
    label on its next animation frame, late on a loaded machine)."""
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).move_by_offset(0, 0).perform()
    ActionChains(driver).move_to_element(element).perform()
    return wait_for(
        driver,
        "var t = document.querySelector(arguments[0] + ' .hoverlayer .hovertext');"
        "return t ? t.textContent : null;",
        chart,
        timeout=timeout,
    )


def wait_for(driver, script: str, *args, timeout: float = 3.0):
    """The first truthy value `script` returns, polled every 50 ms for up to `timeout` seconds;
    else its last value (a negative control ends here, `timeout` later)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script, *args)
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)
