"""Data-quality signals against hand computations, each warning on both sides of its threshold,
and the signals reaching `inspect`'s statistics, warnings and HTML."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from prefsmith.inspection import quality as q
from prefsmith.inspection.inspect import inspect_pairs
from prefsmith.schemas.io import write_table
from prefsmith.schemas.manifest import Manifest, input_ref, manifest_path
from prefsmith.schemas.tables import PAIRS, RESPONSES

CHOSEN = ["a b c d e f g h i j", "one two three", "x y", "p q r s"]
REJECTED = ["a b c d e f g h i j k", "four five", "x y z w", "p"]
SCORES_C = [3.0, 1.0, 2.0, 4.0]
SCORES_R = [2.5, 0.0, 1.5, 0.5]


def _frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "chosen": CHOSEN,
            "rejected": REJECTED,
            "score_chosen": SCORES_C,
            "score_rejected": SCORES_R,
            "chosen_response_id": [f"c{i}" for i in range(4)],
            "rejected_response_id": [f"r{i}" for i in range(4)],
        }
    )


def test_jaccard_by_hand():
    assert q.jaccard("a b c", "a b d") == pytest.approx(2 / 4)
    assert q.jaccard("A b", "a B") == 1.0 and q.jaccard("", "") == 1.0
    assert q.jaccard("a b c d e f g h i j", "a b c d e f g h i j k") == pytest.approx(10 / 11)


def test_near_duplicates_share_and_warning():
    signal = q.near_duplicates(_frame())
    assert signal["value"] == pytest.approx(1 / 4) and signal["warn"]  # only pair 0: 10/11 ≥ 0.9
    distinct = _frame().with_columns(rejected=pl.lit("zzz"))
    assert q.near_duplicates(distinct) | {"message": ""} == {
        "value": 0.0, "threshold": q.NEAR_DUPLICATE_MAX, "warn": False, "message": "",
    }  # fmt: skip


def _spearman_by_ranks(x, y) -> float:
    rank = lambda v: np.argsort(np.argsort(v)).astype(float)  # noqa: E731 (no ties here)
    return float(np.corrcoef(rank(x), rank(y))[0, 1])


def test_length_vs_score_is_spearman_of_words_and_scores():
    lengths = [10, 3, 2, 4, 11, 2, 4, 1]
    scores = SCORES_C + SCORES_R
    assert len(set(lengths)) < len(
        lengths
    )  # ties: scipy averages ranks, so compare on a tie-free copy
    signal = q.length_vs_score(_frame())
    from scipy.stats import spearmanr

    assert signal["value"] == pytest.approx(spearmanr(lengths, scores).statistic)
    tie_free = _frame().with_columns(rejected=pl.Series(["a " * 11, "b " * 5, "c " * 6, "d " * 7]))
    lengths = [10, 3, 2, 4, 11, 5, 6, 7]
    assert q.length_vs_score(tie_free)["value"] == pytest.approx(
        _spearman_by_ranks(lengths, scores)
    )


def test_all_tied_share_from_the_pairs_manifest():
    over = q.all_tied({"rows_in": 20, "dropped": {"all_tied": 3}})
    under = q.all_tied({"rows_in": 20, "dropped": {"all_tied": 1, "other": 9}})
    assert (over["value"], over["warn"]) == (0.15, True)
    assert (under["value"], under["warn"]) == (0.05, False)
    assert q.all_tied(None)["value"] is None


def test_all_tied_share_from_the_scores_table_counts_every_prompt():
    scores = pl.DataFrame(
        {
            "prompt_id": ["a", "a", "a", "b", "b", "c", "c", "d"],
            "score": [1.0, 1.0, 1.0, 0.5, 0.7, 2.0, 2.0, 9.0],
        }
    )  # a and c tied; b not; d has one sample (no pair possible either way): left out
    tied = q.all_tied({"rows_in": 40, "dropped": {"all_tied": 1}}, scores)
    assert tied["value"] == pytest.approx(2 / 3) and tied["warn"]
    assert "2 of 3 prompts" in tied["message"] and "scores table" in tied["message"]


def _responses(path, cut: set[str]):
    rows = [
        {
            "prompt_id": "p", "response_id": rid, "sample_idx": i, "response": "x",
            "n_tokens": 1, "finish_reason": "length" if rid in cut else "stop",
            "generator": "g", "gen_config_hash": "h",
        }
        for i, rid in enumerate([f"c{k}" for k in range(4)] + [f"r{k}" for k in range(4)])
    ]  # fmt: skip
    return write_table(rows, path, RESPONSES)


def test_truncation_by_side(tmp_path):
    responses = _responses(tmp_path / "responses.parquet", cut={"r1", "r2", "c3"})
    signal = q.truncation(_frame(), responses)
    assert signal["by_side"] == {"chosen": 0.25, "rejected": 0.5}
    assert signal["value"] == 0.5 and signal["warn"]
    assert q.truncation(_frame(), None)["value"] is None


def test_inspect_reports_and_warns(tmp_path):
    responses = _responses(tmp_path / "responses.parquet", cut={"r1", "r2"})
    rows = [
        {
            "pair_id": f"pair{i}", "prompt_id": f"p{i}", "messages": [{"role": "user", "content": "q"}],
            "chosen": CHOSEN[i], "rejected": REJECTED[i], "chosen_response_id": f"c{i}",
            "rejected_response_id": f"r{i}", "score_chosen": SCORES_C[i], "score_rejected": SCORES_R[i],
            "margin": SCORES_C[i] - SCORES_R[i], "strategy": "best_vs_worst", "scorer": "rule",
        }
        for i in range(4)
    ]  # fmt: skip
    pairs = write_table(rows, tmp_path / "pairs.parquet", PAIRS)
    Manifest(
        stage="pairs", unit="prompt", config={}, inputs=[input_ref(responses)],
        outputs={"pairs": str(pairs)}, rows_in=5, rows_out=4, dropped={"all_tied": 1},
    ).write(manifest_path(pairs))  # fmt: skip
    result = inspect_pairs(pairs, out_html=tmp_path / "report.html")
    quality = result.stats["quality"]
    assert quality["truncation"]["by_side"] == {"chosen": 0.0, "rejected": 0.5}
    assert quality["all_tied_prompts"]["value"] == pytest.approx(1 / 5)
    assert [w.split(":")[0] for w in result.warnings if w.split(":")[0] in {
        "truncation", "near duplicates", "all tied prompts"}] == [
        "truncation", "near duplicates", "all tied prompts"]  # fmt: skip
    assert "<h2>Data quality</h2>" in result.html_path.read_text()
