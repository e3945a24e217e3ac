"""The evaluation report: stable JSON keys, markdown, and the self-contained HTML page opened in a
real headless Chromium (no console errors, every chart has data, a screenshot kept in
tests/artifacts/eval_report.png). The browser tests skip where Chromium is missing, except under
CI=true, where they fail. The Chromium driving follows tests/scoring/test_inspect_html.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from browser_check import (  # noqa: F401
    MARK_CLASSES,
    check_page_in_chromium,
    console_messages,
    parse,
    run_chromium,
)

from prefsmith.evaluation.compare import REPORT_KEYS, compare_policies
from prefsmith.evaluation.kl import KL_SAMPLES
from prefsmith.evaluation.lm_eval_hook import lm_eval_stage
from prefsmith.evaluation.preference_accuracy import MARGINS
from prefsmith.evaluation.report_html import outcome_bars_svg
from prefsmith.schemas.eval_configs import CompareConfig, LmEvalConfig
from prefsmith.schemas.io import write_table
from prefsmith.schemas.tables import RESPONSES, SCORES


def write_side(
    root: Path, *, rng, n_prompts: int, shift: float, mean_len: float
) -> tuple[Path, Path]:
    """Scores (2 samples per prompt, reward ≈ shift + noise) and responses tables of one policy."""
    scores, responses = [], []
    for p in range(n_prompts):
        for i in range(2):
            rid, n = f"prompt{p:03d}-{i}", int(max(1, rng.normal(mean_len, 4)))
            score = (
                float(round(shift + rng.normal(0, 1), 1)) if p % 7 else 0.0
            )  # every 7th prompt ties
            scores.append(
                {
                    "response_id": rid,
                    "prompt_id": f"prompt{p:03d}",
                    "scorer": "rule",
                    "score": score,
                    "objectives": [],
                    "n_tokens": n + 10,
                }
            )
            responses.append(
                {
                    "prompt_id": f"prompt{p:03d}",
                    "response_id": rid,
                    "sample_idx": i,
                    "response": "w " * n,
                    "n_tokens": n,
                    "finish_reason": "stop",
                    "generator": "g",
                    "gen_config_hash": "h",
                }
            )
    return write_table(scores, root / "scores.parquet", SCORES), write_table(
        responses, root / "responses.parquet", RESPONSES
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A comparison of 60 prompts (tuned better and shorter), with KL samples, margins and lm-eval."""
    root, rng = tmp_path_factory.mktemp("eval"), np.random.default_rng(0)
    tuned = write_side(root / "tuned", rng=rng, n_prompts=60, shift=0.8, mean_len=12)
    base = write_side(root / "base", rng=rng, n_prompts=58, shift=0.0, mean_len=20)
    kl = write_table(
        [
            {
                "response_id": f"r{i}",
                "prompt_id": f"p{i}",
                "tokens": 10,
                "logp_policy": -5.0,
                "logp_reference": -5.0 - k,
                "kl_seq": k,
                "k3_seq": k / 2,
            }
            for i, k in enumerate(rng.gamma(2.0, 1.0, 50))
        ],
        root / "kl.parquet",
        KL_SAMPLES,
    )
    margins = write_table(
        [
            {
                "pair_id": f"x{i}",
                "prompt_id": f"p{i}",
                "policy_logp_chosen": m,
                "policy_logp_rejected": 0.0,
                "ref_logp_chosen": 0.0,
                "ref_logp_rejected": 0.0,
                "margin": m,
            }
            for i, m in enumerate(rng.normal(0.5, 1.0, 40))
        ],
        root / "margins.parquet",
        MARGINS,
    )
    hook = lm_eval_stage(
        {}, config=LmEvalConfig(checkpoint="ckpt", tasks=["hellaswag"]), out_dir=root / "lm"
    )
    inputs = {
        "tuned_scores": tuned[0],
        "tuned_responses": tuned[1],
        "base_scores": base[0],
        "base_responses": base[1],
        "kl": kl,
        "heldout": margins,
        "lm_eval": hook.output,
    }
    result = compare_policies(inputs, config=CompareConfig(n_boot=500), out_dir=root / "out")
    return result, root


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
    assert not re.search(r"\b(src|href)\s*=|@import|url\(|<link\b", page)  # nothing fetched
    charts = parse(page).charts
    assert len(charts) == 6
    assert [c for c in charts if c["points"] == 0 or c["marks"] == 0] == []
    assert {c["title"]: c["points"] for c in charts}["Outcome per held-out prompt"] == 58
    assert (
        "fraction of pairs" not in page.split("Implicit-reward margin")[0]
    )  # responses are counted


def test_outcome_bars_count_and_label():
    dom = parse(outcome_bars_svg({"tuned wins": 3, "tie": 0, "base wins": 2}, title="t"))
    assert dom.charts == [{"points": 5, "title": "t", "marks": 3}]


def test_report_in_headless_chromium(report, chromium):
    result, _ = report
    page = result.output.parent / "eval_report.html"
    charts = check_page_in_chromium(chromium, page, screenshot="eval_report.png", size=(1280, 1800))
    assert len(charts) == 6


def test_chromium_check_catches_console_errors(report, chromium, tmp_path):
    """Negative control: a failing script in the same page is caught by both detectors."""
    result, _ = report
    broken = tmp_path / "broken.html"
    broken.write_text(
        (result.output.parent / "eval_report.html")
        .read_text(encoding="utf-8")
        .replace("</body>", "<script>notDefined();</script></body>"),
        encoding="utf-8",
    )
    done = run_chromium(chromium, broken, "--enable-logging=stderr", "--v=0", "--dump-dom")
    dom = parse(done.stdout)
    assert dom.errors["count"] == 1 and "notDefined" in dom.errors["text"]
