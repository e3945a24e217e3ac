"""`prefsmith inspect BUILD` on a multi-round build (prefsmith.inspection.rounds_view): per-round
quantiles and the KS drift between rounds against hand computations, the HTML histograms with
one series per round (counts as numpy bins them), and the page as Chromium draws it."""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest
from browser_check import chart_specs, check_page_in_chromium
from inspect_cases import make_pairs
from scipy.stats import ks_2samp

from prefsmith.inspection.rounds_view import inspect_rounds, is_rounds_build, round_folders
from prefsmith.schemas.errors import ConfigError
from prefsmith.schemas.io import write_table
from prefsmith.schemas.tables import PAIRS


def write_build(root, rounds: dict[int, tuple[list[float], list[float]]]):
    for index, (chosen, rejected) in rounds.items():
        folder = root / f"round-{index}"
        folder.mkdir(parents=True)
        write_table(make_pairs(chosen, rejected), folder / "pairs.parquet", PAIRS)
    return root


@pytest.fixture
def build(tmp_path):
    rng = np.random.default_rng(0)
    first = (rng.normal(0.0, 1.0, 40).tolist(), rng.normal(-2.0, 1.0, 40).tolist())
    second = (rng.normal(0.5, 0.3, 30).tolist(), rng.normal(-0.2, 0.3, 30).tolist())
    root = write_build(tmp_path / "build", {1: first, 2: second, 10: first})
    (root / "round-3").mkdir()  # a round killed before its pairs: not shown
    (root / "eval-base").mkdir()
    return root, {1: first, 2: second, 10: first}


def test_rounds_are_found_by_number_not_by_name(build):
    root, _ = build
    assert [index for index, _ in round_folders(root)] == [1, 2, 10]
    assert is_rounds_build(root) and not is_rounds_build(root / "round-1")


def test_stats_match_hand_quantiles_and_scipy_ks(build):
    root, rounds = build
    stats = inspect_rounds(root, out_html=None).stats
    first, second, third = stats["rounds"]
    assert (first["n_pairs"], second["n_pairs"]) == (40, 30)
    margins = {t: np.array(c) - np.array(r) for t, (c, r) in rounds.items()}
    assert second["margin"]["mean"] == pytest.approx(statistics.fmean(margins[2]))
    assert second["score_chosen"]["p50"] == pytest.approx(statistics.median(rounds[2][0]))
    assert first["ks_vs_previous"] is None
    want = ks_2samp(margins[2], margins[1])
    assert second["ks_vs_previous"]["margin"]["ks"] == pytest.approx(want.statistic)
    assert second["ks_vs_previous"]["margin"]["p_value"] == pytest.approx(want.pvalue)
    assert third["ks_vs_previous"]["score_chosen"]["ks"] == pytest.approx(
        ks_2samp(rounds[10][0], rounds[2][0]).statistic
    )
    assert stats["evaluation"] is None  # no rounds.json: no evaluation rows


def test_html_overlays_one_series_per_round_with_numpy_counts(build, chromium):
    root, rounds = build
    (root / "rounds.json").write_text(json.dumps({"rounds": []}))
    result = inspect_rounds(root, out_html=root / "rounds.inspect.html")
    page = result.html_path.read_text(encoding="utf-8")
    spec = chart_specs(page)["margin (chosen − rejected, raw), per round"]
    assert [trace["name"] for trace in spec["data"]] == ["round 1", "round 2", "round 10"]
    margins = np.concatenate([np.array(c) - np.array(r) for c, r in rounds.values()])
    trace = spec["data"][1]
    edges = [row[0] for row in trace["customdata"]] + [trace["customdata"][-1][1]]
    counts = np.histogram(np.array(rounds[2][0]) - np.array(rounds[2][1]), bins=edges)[0]
    assert [row[2] for row in trace["customdata"]] == counts.tolist()
    assert edges[0] == pytest.approx(margins.min()) and edges[-1] == pytest.approx(margins.max())
    charts = check_page_in_chromium(
        chromium, result.html_path, screenshot="rounds_report.png", size=(1280, 1400)
    )
    assert len(charts) == 3


def test_a_folder_without_rounds_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="no round-<t>/pairs.parquet"):
        inspect_rounds(tmp_path, out_html=None)
