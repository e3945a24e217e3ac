"""Inspect's statistics against numbers computed independently here (stdlib math on the same
rows), and the inspect stage on tables the real pairs stage wrote. Weights, warnings and drift
have their own files (test_inspect_weights.py, test_inspect_warnings.py, test_inspect_drift.py).
"""

from __future__ import annotations

import json
import statistics
from collections import Counter

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from inspect_cases import OBJECTIVES, check_summary, hand_madpo, make_pairs, make_scores, sig

from prefsmith.inspection import stats as st
from prefsmith.inspection.inspect import inspect_pairs
from prefsmith.schemas.errors import InputError, SchemaError
from prefsmith.schemas.io import write_table
from prefsmith.schemas.losses import MADPOParams, UniDPOParams
from prefsmith.schemas.manifest import Manifest, manifest_path
from prefsmith.schemas.tables import PROMPTS, RESPONSES, SCORES


@pytest.fixture
def random_table():
    """200 pairs over 70 prompts; a fifth of them near ties; word lengths 3–40."""
    rng = np.random.default_rng(7)
    n = 200
    rejected = rng.normal(0.0, 1.0, n)
    margin = np.abs(rng.normal(0.8, 0.6, n))
    margin[::5] = 1e-5  # near ties (threshold 1e-3·std ≈ 1e-3)
    margin[::20] = 0.0  # exact ties
    chosen = rejected + margin
    lengths = [tuple(int(v) for v in rng.integers(3, 40, 2)) for _ in range(n)]
    prompts = [f"p{int(v)}" for v in rng.integers(0, 70, n)]
    pairs = make_pairs(
        list(chosen), list(rejected), prompts=prompts, lengths=lengths, strategy="top_k_pairs"
    )
    return pairs, lengths


def test_statistics_match_independent_computation(random_table):
    pairs, lengths = random_table
    scale, shift, eta, tau_good, tau, c_max, c_min, lam = 1.7, -0.4, 0.9, 1.5, 3.0, 2.5, 0.3, 0.7
    stats = st.pair_statistics(
        pairs,
        transform=(scale, shift),
        unidpo=UniDPOParams(eta=eta, tau_good=tau_good),
        madpo=MADPOParams(tau=tau, c_max=c_max, c_min=c_min, lam=lam),
        manifest={"rows_in": 80, "rows_out": 70, "dropped": {"all_tied": 10}},
    )
    rows = list(pairs.iter_rows(named=True))
    sc = [r["score_chosen"] for r in rows]
    sr = [r["score_rejected"] for r in rows]
    m = [r["margin"] for r in rows]
    words_c = [len(r["chosen"].split()) for r in rows]
    words_r = [len(r["rejected"].split()) for r in rows]
    assert words_c == [c for c, _ in lengths] and words_r == [r for _, r in lengths]
    dist = stats["distributions"]
    check_summary(dist["score_chosen"], sc)
    check_summary(dist["score_rejected"], sr)
    check_summary(dist["margin_raw"], m)
    check_summary(dist["margin_norm"], [scale * x for x in m])
    check_summary(dist["score_chosen_norm"], [scale * x + shift for x in sc])
    check_summary(dist["w_qual"], [sig(eta * scale * x) for x in m])
    check_summary(dist["madpo_weight"], [hand_madpo(scale * x, tau, c_max, c_min, lam) for x in m])
    check_summary(dist["len_diff"], [a - b for a, b in zip(words_c, words_r, strict=True)])
    assert stats["length"]["unit"] == "words"
    assert stats["length"]["corr_margin_len_diff"] == pytest.approx(
        statistics.correlation(m, [a - b for a, b in zip(words_c, words_r, strict=True)]), rel=1e-9
    )
    spread = statistics.pstdev(sc + sr)
    assert stats["ties"]["tie_rate"] == pytest.approx(sum(x == 0 for x in m) / len(m))
    assert stats["ties"]["near_tie_rate"] == pytest.approx(
        sum(abs(x) < 1e-3 * spread or x == 0 for x in m) / len(m)
    )
    assert stats["ties"]["near_tie_rate"] == pytest.approx(0.2)  # by construction: every fifth pair
    per_prompt = list(Counter(r["prompt_id"] for r in rows).values())
    check_summary(stats["pairs_per_prompt"], per_prompt)
    assert stats["c_nll"]["active_fraction"] == pytest.approx(
        sum(scale * x + shift >= tau_good for x in sc) / len(sc)
    )
    weights = [hand_madpo(scale * x, tau, c_max, c_min, lam) for x in m]
    assert stats["madpo"]["frac_amplified"] == pytest.approx(
        sum(w > 1 + 1e-12 for w in weights) / len(m)
    )
    assert stats["counts"] | {"strategies": None} == {
        "pairs": 200,
        "pairs_used": 200,
        "prompts": len(per_prompt),
        "non_finite": 0,
        "margin_mismatch": 0,
        "negative_margin": 0,
        "strategies": None,
        "prompts_in": 80,
        "prompts_out": 70,
        "dropped": {"all_tied": 10},
    }
    assert stats["counts"]["strategies"] == {"top_k_pairs": 200}
    json.dumps(stats, allow_nan=False)  # serializable as is (a Prefect artifact, --json)


def test_token_lengths_and_objectives_come_from_the_scores_table(random_table):
    pairs, _ = random_table
    rng = np.random.default_rng(3)
    tokens = [tuple(int(v) for v in rng.integers(20, 300, 2)) for _ in range(pairs.height)]
    scores = make_scores(pairs, tokens=tokens)
    stats = st.pair_statistics(pairs, scores=scores)
    assert stats["length"]["unit"].startswith("tokens")
    check_summary(stats["distributions"]["len_chosen"], [c for c, _ in tokens])
    check_summary(stats["distributions"]["len_diff"], [c - r for c, r in tokens])
    by_id = {
        (r["response_id"], o["name"]): o["value"]
        for r in scores.iter_rows(named=True)
        for o in r["objectives"]
    }
    assert set(stats["objectives"]) == set(OBJECTIVES)
    for name in OBJECTIVES:
        diffs = [by_id[(f"r{i}-c", name)] - by_id[(f"r{i}-r", name)] for i in range(pairs.height)]
        check_summary(stats["objectives"][name]["margin"], diffs)
        assert stats["objectives"][name]["agreement"] == pytest.approx(
            sum(d > 0 for d in diffs) / len(diffs)
        )


def test_missing_token_counts_fall_back_to_words(random_table):
    pairs, lengths = random_table
    scores = make_scores(pairs, tokens=[(5, 5)] * pairs.height).slice(1)  # one response unscored
    stats = st.pair_statistics(pairs, scores=scores)
    assert stats["length"]["unit"] == "words"
    check_summary(stats["distributions"]["len_chosen"], [c for c, _ in lengths])


def write_stage_tables(root, *, normalization="zscore"):
    """Prompts, responses and scores for 30 prompts × 4 responses; run the real pairs stage."""
    from prefsmith.curation.pairs import build_pairs
    from prefsmith.schemas.data_configs import PairsConfig

    rng = np.random.default_rng(11)
    prompts, responses, scores = [], [], []
    for p in range(30):
        pid = f"prompt{p:03d}"
        prompts.append(
            {
                "prompt_id": pid,
                "messages": [{"role": "user", "content": f"q{p}"}],
                "source": "t",
                "metadata": "{}",
            }
        )
        for k in range(4):
            rid, text = f"{pid}-{k}", " ".join(["w"] * int(rng.integers(2, 30)))
            responses.append(
                {
                    "prompt_id": pid,
                    "response_id": rid,
                    "sample_idx": k,
                    "response": f"{k} {text}",
                    "n_tokens": 3,
                    "finish_reason": "stop",
                    "generator": "g",
                    "gen_config_hash": "h",
                }
            )
            score = float(rng.uniform(0.05, 0.2)) if p > 0 else 0.1  # prompt 0: all tied
            scores.append(
                {
                    "response_id": rid,
                    "prompt_id": pid,
                    "scorer": "rm",
                    "score": score,
                    "objectives": [],
                    "n_tokens": 7 + k,
                }
            )
    paths = {
        name: write_table(rows, root / f"{name}.parquet", schema)
        for name, rows, schema in (
            ("prompts", prompts, PROMPTS),
            ("responses", responses, RESPONSES),
            ("scores", scores, SCORES),
        )
    }
    config = PairsConfig(strategy="best_vs_worst", normalization={"method": normalization})
    result = build_pairs(paths, config=config, out_dir=root / "out")
    return result, paths


def test_inspect_reads_the_pairs_stage_manifest(tmp_path):
    result, paths = write_stage_tables(tmp_path)
    manifest = Manifest.read(result.manifest)
    declared = manifest.score_transform.model_dump()
    inspected = inspect_pairs(result.output, scores=paths["scores"])
    s, counts = inspected.stats["settings"], inspected.stats["counts"]
    assert (s["scale"], s["shift"], s["method"]) == (declared["scale"], declared["shift"], "zscore")
    assert counts["dropped"] == manifest.dropped == {"all_tied": 1}
    assert (counts["prompts_in"], counts["prompts_out"], counts["prompts"]) == (30, 29, 29)
    assert inspected.stats["length"]["unit"].startswith("tokens")
    assert inspected.html_path is None
    manifest_path(result.output).unlink()  # no manifest: identity transform, said so
    bare = inspect_pairs(result.output)
    assert (
        bare.stats["settings"]["method"].startswith("none")
        and bare.stats["settings"]["scale"] == 1.0
    )


def test_inspect_rejects_missing_and_malformed_tables(tmp_path):
    with pytest.raises(InputError, match="no Parquet file"):
        inspect_pairs(tmp_path / "nope.parquet")
    bad = write_table(
        [{"pair_id": "a"}], tmp_path / "bad.parquet", pa.schema([("pair_id", pa.string())])
    )
    with pytest.raises(SchemaError, match="missing column 'score_chosen'"):
        inspect_pairs(bad)


def _ranks(values) -> list[float]:
    """Average ranks (1-based) by hand: ties share the mean of their positions."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def test_each_objective_reports_its_rank_correlation_with_the_score(random_table):
    pairs, _ = random_table
    scores = make_scores(pairs, tokens=[(5, 5)] * pairs.height)
    stats = st.pair_statistics(pairs, scores=scores)
    for name in OBJECTIVES:
        values, overall = [], []
        for r in scores.iter_rows(named=True):
            values += [o["value"] for o in r["objectives"] if o["name"] == name]
            overall.append(r["score"])
        a, b = _ranks(values), _ranks(overall)
        expected = statistics.correlation(a, b)  # Pearson of ranks = Spearman
        assert stats["objectives"][name]["score_spearman"] == pytest.approx(expected, abs=1e-9)
        assert 0.5 < expected < 1.0  # the fixture's objectives are score + noise


def test_gating_weights_give_each_objectives_mean_and_dominant_share(random_table):
    pairs, _ = random_table
    pairs = pairs.head(3)
    gates = {  # response id -> gating weights of (helpful, safe), by hand
        "r0-c": (0.7, 0.3), "r0-r": (0.2, 0.8), "r1-c": (0.6, 0.4),
        "r1-r": (0.9, 0.1), "r2-c": (0.55, 0.45), "r2-r": (0.1, 0.9),
    }  # fmt: skip
    scores = make_scores(pairs, tokens=[(5, 5)] * 3).with_columns(
        pl.col("response_id")
        .map_elements(
            lambda rid: [{"name": "helpful", "value": 1.0}, {"name": "gate/helpful", "value": gates[rid][0]},
                         {"name": "gate/safe", "value": gates[rid][1]}],
            return_dtype=pl.List(pl.Struct({"name": pl.String, "value": pl.Float64})),
        )
        .alias("objectives")
    )  # fmt: skip
    gating = st.pair_statistics(pairs, scores=scores)["gating"]
    assert gating["helpful"]["mean_weight"] == pytest.approx(
        (0.7 + 0.2 + 0.6 + 0.9 + 0.55 + 0.1) / 6
    )
    assert gating["safe"]["mean_weight"] == pytest.approx((0.3 + 0.8 + 0.4 + 0.1 + 0.45 + 0.9) / 6)
    # helpful weighs most for r0-c, r1-c, r1-r, r2-c; safe for r0-r, r2-r
    assert gating["helpful"]["dominant_share"] == pytest.approx(4 / 6)
    assert gating["safe"]["dominant_share"] == pytest.approx(2 / 6)
    assert set(gating) == {"helpful", "safe"}  # the gates, named without their prefix
