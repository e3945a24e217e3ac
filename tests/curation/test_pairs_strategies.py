"""The pairs stage on hand-worked tables: which responses become chosen/rejected, and why.

Every table here is written with prefsmith.schemas.io.write_table; each test names its responses
`<prompt>-<sample>` and spells out the scores, so the expected pairs are worked by hand.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from prefsmith.curation.pairs import build_pairs
from prefsmith.schemas.data_configs import PairsConfig
from prefsmith.schemas.ids import pair_id
from prefsmith.schemas.io import read_frame, write_table
from prefsmith.schemas.manifest import Manifest
from prefsmith.schemas.tables import PAIRS, PROMPTS, QUARANTINE, RESPONSES, SCORES

NAN, INF = float("nan"), float("inf")


def write_inputs(root: Path, rows, *, scorer: str = "rm", prompts=None, orphan_scores=()) -> dict:
    """Write prompts/responses/scores for rows (prompt_id, sample_idx, text, score, n_tokens).

    `prompts` defaults to every prompt_id in rows; `orphan_scores` are extra (response_id,
    prompt_id, score) score rows without a responses row.
    """
    prompt_ids = sorted({r[0] for r in rows}) if prompts is None else prompts
    write_table(
        [
            {
                "prompt_id": p,
                "messages": [{"role": "user", "content": f"question {p}"}],
                "source": "test",
                "metadata": "{}",
            }
            for p in prompt_ids
        ],
        root / "prompts.parquet",
        PROMPTS,
    )
    write_table(
        [
            {
                "prompt_id": p,
                "response_id": f"{p}-{i}",
                "sample_idx": i,
                "response": text,
                "n_tokens": n,
                "finish_reason": "stop",
                "generator": "g",
                "gen_config_hash": "h",
            }
            for p, i, text, _, n in rows
        ],
        root / "responses.parquet",
        RESPONSES,
    )
    scores = [
        {
            "response_id": f"{p}-{i}",
            "prompt_id": p,
            "scorer": scorer,
            "score": s,
            "objectives": [],
            "n_tokens": n,
        }
        for p, i, _, s, n in rows
    ] + [
        {
            "response_id": rid,
            "prompt_id": p,
            "scorer": scorer,
            "score": s,
            "objectives": [],
            "n_tokens": 1,
        }
        for rid, p, s in orphan_scores
    ]
    write_table(scores, root / "scores.parquet", SCORES)
    return {
        "scores": root / "scores.parquet",
        "responses": root / "responses.parquet",
        "prompts": root / "prompts.parquet",
    }


def run(tmp_path: Path, rows, **config) -> tuple[pl.DataFrame, Manifest, pl.DataFrame]:
    """build_pairs on `rows`; returns (pairs, manifest, quarantine)."""
    paths = write_inputs(tmp_path / "in", rows, **config.pop("inputs", {}))
    result = build_pairs(
        {
            "scores": paths["scores"],
            "responses": paths["responses"],
            "prompts": paths["prompts"],
        },
        config=PairsConfig(**config),
        out_dir=tmp_path / "out",
    )
    return (
        read_frame(result.output, PAIRS),
        Manifest.read(result.manifest),
        read_frame(result.quarantine, QUARANTINE),
    )


def triples(pairs: pl.DataFrame) -> set[tuple[str, str, float]]:
    """(chosen id, rejected id, margin rounded) of every pair."""
    return {
        (c, r, round(m, 9))
        for c, r, m in pairs.select(
            "chosen_response_id", "rejected_response_id", "margin"
        ).iter_rows()
    }


# Prompt a: a-1 scores 3.0 (50 tokens), a-2 2.0 (5), a-0 1.0 (10), a-3 0.5 (1).
PROMPT_A = [
    ("a", 0, "x", 1.0, 10),
    ("a", 1, "y", 3.0, 50),
    ("a", 2, "z", 2.0, 5),
    ("a", 3, "w", 0.5, 1),
]


def test_best_vs_worst_by_hand(tmp_path):
    pairs, manifest, _ = run(tmp_path, PROMPT_A)
    assert triples(pairs) == {("a-1", "a-3", 2.5)}
    row = pairs.row(0, named=True)
    assert (row["chosen"], row["rejected"]) == ("y", "w")
    assert (row["score_chosen"], row["score_rejected"]) == (3.0, 0.5)
    assert row["pair_id"] == pair_id("a-1", "a-3")
    assert row["messages"] == [{"role": "user", "content": "question a"}]
    assert (row["strategy"], row["scorer"]) == ("best_vs_worst", "rm")
    assert (manifest.rows_in, manifest.rows_out, manifest.dropped) == (1, 1, {})


def test_length_penalty_changes_the_choice(tmp_path):
    """penalty 0.04/token: selection a-0 0.6, a-1 1.0, a-2 1.8, a-3 0.46 -> a-2 vs a-3.

    The raw margin stays raw: 2.0 - 0.5 = 1.5 (not the selection difference 1.34).
    """
    pairs, _, _ = run(tmp_path, PROMPT_A, length_penalty=0.04)
    assert triples(pairs) == {("a-2", "a-3", 1.5)}


def test_length_penalty_against_raw_score_drops_the_pair(tmp_path):
    """b-0 scores 2.0 in 100 tokens, b-1 1.0 in 1: penalty 0.1 ranks b-1 first (0.9 vs -8),
    but its raw margin would be -1.0, so no pair (below_min_margin), never a flipped one."""
    rows = [("b", 0, "long and good", 2.0, 100), ("b", 1, "short", 1.0, 1)]
    pairs, manifest, _ = run(tmp_path, rows, length_penalty=0.1)
    assert pairs.height == 0
    assert manifest.dropped == {"below_min_margin": 1}
    pairs, _, _ = run(tmp_path / "no-penalty", rows)
    assert triples(pairs) == {("b-0", "b-1", 1.0)}


def test_top_k_pairs_by_hand(tmp_path):
    """Top 3 by score: a-1 (3), a-2 (2), a-0 (1); a-3 (0.5) is outside the top 3."""
    pairs, _, _ = run(tmp_path, PROMPT_A, strategy="top_k_pairs", top_k=3)
    assert triples(pairs) == {("a-1", "a-2", 1.0), ("a-1", "a-0", 2.0), ("a-2", "a-0", 1.0)}
    pairs, _, _ = run(tmp_path / "k4", PROMPT_A, strategy="top_k_pairs", top_k=4)
    assert len(pairs) == 6 and all(m > 0 for m in pairs["margin"])


def test_min_margin_filters_pairs_and_prompts(tmp_path):
    pairs, manifest, _ = run(tmp_path, PROMPT_A, strategy="top_k_pairs", top_k=3, min_margin=1.5)
    assert triples(pairs) == {("a-1", "a-0", 2.0)}
    pairs, manifest, _ = run(tmp_path / "high", PROMPT_A, min_margin=2.6)
    assert pairs.height == 0
    assert manifest.dropped == {"below_min_margin": 1}
    pairs, _, _ = run(tmp_path / "equal", PROMPT_A, min_margin=2.5)  # margin >= min_margin
    assert triples(pairs) == {("a-1", "a-3", 2.5)}


def test_best_vs_random_draws_a_lower_scored_other_response(tmp_path):
    drawn = set()
    for seed in range(12):
        pairs, _, _ = run(tmp_path / str(seed), PROMPT_A, strategy="best_vs_random", seed=seed)
        assert pairs.height == 1
        row = pairs.row(0, named=True)
        assert row["chosen_response_id"] == "a-1"
        assert row["rejected_response_id"] in {"a-0", "a-2", "a-3"}
        assert row["margin"] == 3.0 - row["score_rejected"]
        drawn.add(row["rejected_response_id"])
    assert len(drawn) >= 2  # the seed matters


def test_best_vs_random_is_stable_for_a_seed(tmp_path):
    first, _, _ = run(tmp_path / "1", PROMPT_A, strategy="best_vs_random", seed=3)
    again, _, _ = run(tmp_path / "2", list(reversed(PROMPT_A)), strategy="best_vs_random", seed=3)
    assert first.equals(again)


def test_best_vs_random_never_draws_a_tie(tmp_path):
    """c-0 and c-1 tie at the top: whichever is chosen, the rejected must be c-2."""
    rows = [("c", 0, "p", 2.0, 1), ("c", 1, "q", 2.0, 1), ("c", 2, "r", 1.0, 1)]
    for seed in range(6):
        pairs, _, _ = run(tmp_path / str(seed), rows, strategy="best_vs_random", seed=seed)
        assert pairs["rejected_response_id"].to_list() == ["c-2"]


@pytest.mark.parametrize("strategy", ["best_vs_worst", "best_vs_random", "top_k_pairs"])
def test_ties_never_become_pairs(tmp_path, strategy):
    """t: all equal -> all_tied. u: 2, 2, 1 -> only pairs against u-2 (margin 1)."""
    rows = [("t", i, f"t{i}", 1.0, 1) for i in range(3)]
    rows += [("u", 0, "u0", 2.0, 1), ("u", 1, "u1", 2.0, 1), ("u", 2, "u2", 1.0, 1)]
    pairs, manifest, _ = run(tmp_path, rows, strategy=strategy, top_k=3)
    assert set(pairs["rejected_response_id"]) == {"u-2"}
    assert set(pairs["margin"]) == {1.0}
    expected = 2 if strategy == "top_k_pairs" else 1
    assert pairs.height == expected
    assert manifest.dropped == {"all_tied": 1}


def test_duplicate_texts_merge_with_mean_score(tmp_path):
    """d-0 and d-1 are both "same" (1.0 and 3.0): one response d-0 with score 2.0, which beats
    "other" (1.5). Without merging, "same" vs "same" would be an identical-text pair."""
    rows = [("d", 0, "same", 1.0, 4), ("d", 1, "same", 3.0, 4), ("d", 2, "other", 1.5, 4)]
    rows += [("e", 0, "dup", 1.0, 2), ("e", 1, "dup", 5.0, 2)]  # one text: nothing to pair
    pairs, manifest, _ = run(tmp_path, rows, strategy="top_k_pairs", top_k=3)
    assert triples(pairs) == {("d-0", "d-2", 0.5)}
    assert pairs["score_chosen"].to_list() == [2.0]
    assert (pairs["chosen"] != pairs["rejected"]).all()
    assert manifest.extra["responses"]["duplicate_response_merged"] == 2
    assert manifest.dropped == {"fewer_than_two_responses": 1}


def test_non_finite_scores_are_quarantined_and_counted(tmp_path):
    rows = [("f", 0, "f0", NAN, 1), ("f", 1, "f1", INF, 1), ("f", 2, "f2", 2.0, 1)]
    rows += [("g", 0, "g0", 1.0, 1), ("g", 1, "g1", -INF, 1), ("g", 2, "g2", 0.0, 1)]
    pairs, manifest, quarantine = run(tmp_path, rows)
    assert triples(pairs) == {("g-0", "g-2", 1.0)}
    assert sorted(quarantine["row_ref"]) == ["f-0", "f-1", "g-1"]
    assert set(quarantine["reason"]) == {"non_finite_score"}
    assert set(quarantine["stage"]) == {"pairs"}
    assert manifest.extra["responses"]["non_finite_score"] == 3
    assert manifest.dropped == {"fewer_than_two_responses": 1}
    assert manifest.rows_written == {"pairs": 1, "quarantine": 3}


def test_missing_prompts_and_responses_are_counted(tmp_path):
    """h has no prompts row; the score of i-9 has no responses row; j lost both responses."""
    rows = PROMPT_A + [("h", 0, "h0", 1.0, 1), ("h", 1, "h1", 2.0, 1)]
    orphans = [("i-9", "a", 9.0), ("j-0", "j", 1.0), ("j-1", "j", 2.0)]
    inputs = {"prompts": ["a", "j"], "orphan_scores": orphans}
    pairs, manifest, quarantine = run(tmp_path, rows, inputs=inputs)
    assert triples(pairs) == {("a-1", "a-3", 2.5)}  # i-9's 9.0 never reached a pair
    assert manifest.dropped == {"missing_prompt": 1, "fewer_than_two_responses": 1}
    assert (manifest.rows_in, manifest.rows_out) == (3, 1)
    assert sorted(quarantine["row_ref"]) == ["i-9", "j-0", "j-1"]
    assert set(quarantine["reason"]) == {"missing_response"}


def test_counts_reconcile_and_manifest_records_the_transform(tmp_path):
    rows = PROMPT_A + [("t", 0, "t0", 1.0, 1), ("t", 1, "t1", 1.0, 1), ("s", 0, "s0", 4.0, 1)]
    pairs, manifest, _ = run(tmp_path, rows, normalization={"method": "zscore"})
    assert manifest.rows_in == 3 == manifest.rows_out + sum(manifest.dropped.values())
    assert manifest.dropped == {"all_tied": 1, "fewer_than_two_responses": 1}
    assert manifest.unit == "prompt" and manifest.stage == "pairs"
    assert manifest.extra["pairs_written"] == pairs.height == 1
    transform = manifest.score_transform.model_dump()
    scores = [r[3] for r in rows]
    mean = sum(scores) / len(scores)
    std = (sum((s - mean) ** 2 for s in scores) / len(scores)) ** 0.5
    assert transform["method"] == "zscore" and transform["scorer"] == "rm"
    assert transform["scale"] == pytest.approx(1 / std) and transform["shift"] == pytest.approx(
        -mean / std
    )
    assert manifest.extra["responses"]["scores_in"] == len(rows)
