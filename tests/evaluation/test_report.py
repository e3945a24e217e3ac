"""The evaluation report: stable JSON keys, markdown, the page's plotly figures against numpy
(bins, counts, trace names), and the page opened in a real headless Chromium (no console errors,
plotly built every chart with data marks, a screenshot kept in tests/artifacts/eval_report.png). The browser tests skip where Chromium is missing, except under
CI=true, where they fail. The Chromium driving follows tests/scoring/test_inspect_html.py.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from browser_check import chart_specs, check_page_in_chromium, parse, run_chromium

from prefsmith.evaluation.compare import REPORT_KEYS, compare_policies
from prefsmith.inspection import figures as fg
from prefsmith.inspection.figures import histogram_bins
from prefsmith.schemas.eval_configs import CompareConfig

sys.path.insert(0, str(Path(__file__).parent))  # the shared comparison: eval_report_case
from eval_report_case import build_report, write_side


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A comparison of 60 prompts (tuned better and shorter), with KL samples, margins and lm-eval."""
    return build_report(tmp_path_factory.mktemp("eval"))


def test_json_keys_are_stable_and_parts_add_up(report):
    result, _ = report
    data = json.loads(result.output.read_text())
    assert tuple(sorted(data)) == tuple(sorted(REPORT_KEYS))
    wr = data["win_rate"]
    assert data["n_prompts"] == wr["n"] == 58 and wr["wins"] + wr["ties"] + wr["losses"] == 58
    assert wr["ties"] >= 8 and wr["low"] > 0.5  # every 7th prompt ties at 0; tuned is better
    assert data["kl"]["n_samples"] == 50 and data["heldout_pairs"]["n_pairs"] == 40
    assert data["lm_eval"]["message"] == "lm-eval is not installed; skipped tasks: hellaswag"
    assert data["tuned"]["mean_tokens"] < data["base"]["mean_tokens"]


def test_markdown_says_every_part(report):
    result, _ = report
    md = (result.output.parent / "eval_report.md").read_text()
    data = json.loads(result.output.read_text())
    la = data["length_adjusted_win_rate"]
    assert la["status"] == "ok" and la["low"] < la["rate"] < la["high"]
    assert f"{data['win_rate']['rate']:.1%}" in md
    assert f"Length-adjusted win rate: {la['rate']:.1%} (95% CI {la['low']:.1%}" in md
    assert f"{data['heldout_pairs']['accuracy']:.1%} over 40 pairs" in md
    assert (
        "binomial GLM" in md
        and "not that method" in md  # named length-adjusted, not AlpacaEval's LC
        and "lm-eval is not installed; skipped tasks: hellaswag" in md
    )


def test_missing_parts_are_null_not_absent(tmp_path):
    rng = np.random.default_rng(1)
    tuned, base = (
        write_side(tmp_path / s, rng=rng, n_prompts=10, shift=0.0, mean_len=9) for s in ("t", "b")
    )
    inputs = {
        "tuned_scores": tuned[0],
        "tuned_responses": tuned[1],
        "base_scores": base[0],
        "base_responses": base[1],
    }
    result = compare_policies(inputs, config=CompareConfig(n_boot=200), out_dir=tmp_path / "out")
    data = json.loads(result.output.read_text())
    assert tuple(sorted(data)) == tuple(sorted(REPORT_KEYS))
    assert (data["kl"], data["heldout_pairs"], data["lm_eval"]) == (None, None, None)
    assert "not computed" in (tmp_path / "out" / "eval_report.html").read_text()


def test_page_is_self_contained_and_every_chart_has_data(report):
    result, _ = report
    page = (result.output.parent / "eval_report.html").read_text(encoding="utf-8")
    local = page.replace("<script src='plotly.min.js'>", "", 1)  # written beside the page
    assert not re.search(r"\b(src|href)\s*=|@import|url\(|<link\b", local)  # nothing fetched
    assert (result.output.parent / "plotly.min.js").stat().st_size > 1_000_000
    charts = parse(page).charts
    assert len(charts) == 6
    assert [c for c in charts if c["points"] == 0] == []
    assert {c["title"]: c["points"] for c in charts}["Outcome per held-out prompt"] == 58
    assert (
        "fraction of pairs" not in page.split("Implicit-reward margin")[0]
    )  # responses are counted


def test_outcome_bars_count_and_label(report):
    figure = fg.category_bars({"tuned wins": 3, "tie": 0, "base wins": 2}, title="t", ylabel="n")
    html = fg.chart_html(figure)
    assert parse(html).charts == [
        {"points": 5, "title": "t", "plotly": False, "traces": 0, "marks": 0}
    ]
    (bars,) = chart_specs(html)["t"]["data"]
    assert bars["x"] == ["tuned wins", "tie", "base wins"] and bars["y"] == [3, 0, 2]
    assert bars["text"] == ["3", "0", "2"]  # written above each bar
    result, _ = report
    wr = json.loads(result.output.read_text())["win_rate"]
    page = (result.output.parent / "eval_report.html").read_text(encoding="utf-8")
    (bars,) = chart_specs(page)["Outcome per held-out prompt"]["data"]
    assert bars["y"] == [wr["wins"], wr["ties"], wr["losses"]]


def _rewards(root: Path) -> dict[str, np.ndarray]:
    """Each side's reward per response, read from its scores table (not from the page)."""
    return {
        s: pl.read_parquet(root / s / "scores.parquet")["score"].to_numpy()
        for s in ("tuned", "base")
    }


def test_reward_histogram_is_numpys_on_the_shared_bins(report):
    """One trace per policy on bins over both pooled; each bin's count is np.histogram's, its
    y the fraction of that policy's responses; the per-prompt scatter names each prompt."""
    result, root = report
    specs = chart_specs((result.output.parent / "eval_report.html").read_text(encoding="utf-8"))
    rewards = _rewards(root)
    edges, _ = histogram_bins(rewards, bins=fg.BINS)
    pooled = np.concatenate(list(rewards.values()))
    np.testing.assert_allclose(edges, np.linspace(pooled.min(), pooled.max(), fg.BINS + 1))
    traces = specs["Reward per response, tuned vs base"]["data"]
    assert [t["name"] for t in traces] == ["tuned", "base"]
    for trace in traces:
        count = np.histogram(rewards[trace["name"]], bins=edges)[0]
        np.testing.assert_array_equal(np.array(trace["customdata"])[:, 2], count)
        np.testing.assert_allclose(trace["y"], count / rewards[trace["name"]].size)
    _, points = specs["Mean reward per prompt"]["data"]
    assert len(points["customdata"]) == 58 and points["customdata"] == sorted(points["customdata"])


def test_report_in_headless_chromium(report, chromium):
    result, _ = report
    page = result.output.parent / "eval_report.html"
    charts = check_page_in_chromium(chromium, page, screenshot="eval_report.png", size=(1280, 1800))
    assert len(charts) == 6


def test_chromium_check_catches_console_errors(report, chromium, tmp_path):
    """Negative control: a failing script in the same page is caught by both detectors."""
    result, _ = report
    broken = tmp_path / "broken.html"
    shutil.copy(result.output.parent / "plotly.min.js", tmp_path)  # as beside the report
    broken.write_text(
        (result.output.parent / "eval_report.html")
        .read_text(encoding="utf-8")
        .replace("</body>", "<script>notDefined();</script></body>"),
        encoding="utf-8",
    )
    done = run_chromium(chromium, broken, "--enable-logging=stderr", "--v=0", "--dump-dom")
    dom = parse(done.stdout)
    assert dom.errors["count"] == 1 and "notDefined" in dom.errors["text"]


def test_chromium_check_catches_charts_plotly_never_built(report, chromium, tmp_path):
    """Negative control: the same page with no plotly.min.js beside it declares its charts, but
    none is drawn (and the failed script load is a console error): the check must fail."""
    result, _ = report
    page = tmp_path / "eval_report.html"
    shutil.copy(result.output.parent / "eval_report.html", page)
    with pytest.raises(AssertionError):
        check_page_in_chromium(chromium, page, screenshot="eval_report_broken.png", size=(640, 480))
    unbuilt = parse(run_chromium(chromium, page, "--dump-dom").stdout).charts
    assert len(unbuilt) == 6 and not any(c["plotly"] or c["traces"] for c in unbuilt)
