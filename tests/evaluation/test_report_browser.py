"""The eval report's plotly charts driven in real headless Chromium through Debian's chromedriver
(selenium), as tests/inspection/test_pair_browser.py drives the pair browser: hovering an outcome
bar shows its count, a reward-histogram bar the count numpy gives its bin, a per-prompt point the
prompt it stands for. Each check also runs on a page whose hover labels show something else, to
show it can fail. Skipped without chromium + chromedriver, except under CI=true (fails)."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from browser_check import chrome_driver, hover_text  # noqa: F401  (the `driver` fixture)

from prefsmith.inspection import figures as fg

sys.path.insert(0, str(Path(__file__).parent))  # the shared comparison: eval_report_case
from eval_report_case import build_report

OUTCOME = "div.chart[data-title='Outcome per held-out prompt']"
REWARD = "div.chart[data-title='Reward per response, tuned vs base']"
SCATTER = "div.chart[data-title='Mean reward per prompt']"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    result, root = build_report(tmp_path_factory.mktemp("eval-browser"))
    return result.output.parent / "eval_report.html", root


def _scores(root: Path, side: str) -> pl.DataFrame:
    return pl.read_parquet(root / side / "scores.parquet")


def expected(report) -> dict:
    """What the hovers must show, from the tables and the JSON report (not from the page)."""
    page, root = report
    wr = json.loads(page.with_suffix(".json").read_text())["win_rate"]
    tuned, base = (_scores(root, s)["score"].to_numpy() for s in ("tuned", "base"))
    pooled = np.concatenate([tuned, base])
    edges = np.linspace(pooled.min(), pooled.max(), fg.BINS + 1)  # equal bins over both sides
    counts = np.histogram(tuned, bins=edges)[0]
    means = (
        _scores(root, "tuned")
        .group_by("prompt_id")
        .agg(pl.col("score").mean().alias("tuned"))
        .join(_scores(root, "base").group_by("prompt_id").agg(pl.col("score").mean()), on="prompt_id")
    )  # fmt: skip
    return {
        "outcomes": [wr["wins"], wr["ties"], wr["losses"]],
        "bin": int(np.argmax(counts)),
        "bin_count": int(counts.max()),
        "means": {(round(b, 6), round(t, 6)): p for p, t, b in means.iter_rows()},
    }


def _unique_point(driver) -> tuple[int, tuple[float, float]]:
    """Index and (x, y) of a scatter point no other point shares (a hover on it is unambiguous)."""
    xy = driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0] + ' .scatterlayer .point'))"
        ".map(function (p) { return [p.__data__.x, p.__data__.y]; });",
        SCATTER,
    )
    keys = [(round(x, 6), round(y, 6)) for x, y in xy]
    index = next(i for i, k in enumerate(keys) if keys.count(k) == 1)
    return index, keys[index]


def observe(driver, page: Path, *, bin_index: int) -> dict:
    """The hover labels of the three outcome bars, of one tuned reward bar and of one point."""
    from selenium.webdriver.common.by import By

    driver.get(page.as_uri())
    bars = driver.find_elements(By.CSS_SELECTOR, f"{OUTCOME} .trace.bars .point path")
    outcomes = [hover_text(driver, bar, chart=OUTCOME) for bar in bars]
    tuned = driver.find_elements(By.CSS_SELECTOR, f"{REWARD} .trace.bars")[0]
    bar = tuned.find_elements(By.CSS_SELECTOR, ".point path")[bin_index]
    reward = hover_text(driver, bar, chart=REWARD)
    index, xy = _unique_point(driver)
    dot = driver.find_elements(By.CSS_SELECTOR, f"{SCATTER} .scatterlayer .point")[index]
    point = hover_text(driver, dot, chart=SCATTER)
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    return {"outcomes": outcomes, "reward": reward, "point": point, "xy": xy, "errors": errors}


def checks(seen: dict, want: dict) -> dict[str, bool]:
    """Whether each hover shows what it must (one entry per chart)."""
    shown = [re.search(r"prompts (\d+)", t or "") for t in seen["outcomes"]]
    return {
        "outcomes": [int(m.group(1)) if m else None for m in shown] == want["outcomes"],
        "reward": bool(re.search(rf"count {want['bin_count']}\b", seen["reward"] or "")),
        "point": f"prompt_id {want['means'][seen['xy']]}" in (seen["point"] or ""),
    }


@pytest.mark.slow
def test_hovers_show_counts_and_the_prompt(driver, report):
    want = expected(report)
    seen = observe(driver, report[0], bin_index=want["bin"])
    assert checks(seen, want) == {"outcomes": True, "reward": True, "point": True}, seen
    assert "tuned" in seen["reward"]  # the hovered trace is the tuned policy's
    assert seen["errors"] == []


@pytest.mark.slow
def test_each_hover_check_fails_on_a_page_that_shows_something_else(driver, report, tmp_path):
    """Negative control: outcome hovers show the bar's index, histogram hovers the bin centre,
    scatter hovers the point's index, in place of count, count and prompt_id."""
    page, _ = report
    shutil.copy(page.parent / "plotly.min.js", tmp_path)
    html = page.read_text(encoding="utf-8")
    swaps = {
        "prompts %{y:d}": "prompts %{pointNumber}",
        "count %{customdata[2]:d}": "count %{x:.4g}",
        "prompt_id %{customdata}": "prompt_id %{pointNumber}",
    }
    for old, new in swaps.items():
        assert old in html
        html = html.replace(old, new)
    (tmp_path / "broken.html").write_text(html, encoding="utf-8")
    want = expected(report)
    seen = observe(driver, tmp_path / "broken.html", bin_index=want["bin"])
    assert checks(seen, want) == {"outcomes": False, "reward": False, "point": False}, seen
