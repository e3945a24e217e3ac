"""Inspect's statistics against numbers computed independently here (stdlib math on the same
rows), its warnings on crafted tables, and the KS statistic against hand-worked examples."""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from prefsmith.inspection import stats as st
from prefsmith.inspection import warnings as inspect_warnings
from prefsmith.inspection.inspect import inspect_pairs
from prefsmith.inspection.warnings import warnings as find_warnings
from prefsmith.schemas.errors import InputError, SchemaError
from prefsmith.schemas.io import write_table
from prefsmith.schemas.manifest import Manifest, manifest_path
from prefsmith.schemas.tables import PAIRS, PROMPTS, RESPONSES, SCORES

OBJECTIVES = ("helpfulness", "correctness", "verbosity")


def make_pairs(
    chosen, rejected, *, prompts=None, lengths=None, strategy="best_vs_worst", margin=None
):
    """A PAIRS frame: pair i has scores (chosen[i], rejected[i]) and texts of the given word counts."""
    n = len(chosen)
    prompts = prompts if prompts is not None else [f"p{i}" for i in range(n)]
    lengths = lengths if lengths is not None else [(10, 10)] * n
    rows = [
        {
            "pair_id": f"pair{i}",
            "prompt_id": prompts[i],
            "messages": [{"role": "user", "content": "question"}],
            "chosen": " ".join(["tok"] * lengths[i][0]),
            "rejected": "  ".join(["x"] * lengths[i][1]),
            "chosen_response_id": f"r{i}-c",
            "rejected_response_id": f"r{i}-r",
            "score_chosen": chosen[i],
            "score_rejected": rejected[i],
            "margin": (chosen[i] - rejected[i]) if margin is None else margin[i],
            "strategy": strategy,
            "scorer": "rm",
        }
        for i in range(n)
    ]
    return pl.from_arrow(pa.Table.from_pylist(rows, schema=PAIRS))


def make_scores(pairs: pl.DataFrame, *, tokens, seed=0) -> pl.DataFrame:
    """A SCORES frame for every response of `pairs`, with n_tokens and three objectives."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, row in enumerate(pairs.iter_rows(named=True)):
        for side, score, n in (
            ("chosen", row["score_chosen"], tokens[i][0]),
            ("rejected", row["score_rejected"], tokens[i][1]),
        ):
            objectives = [
                {"name": o, "value": float(score + k + rng.normal(0, 0.5))}
                for k, o in enumerate(OBJECTIVES)
            ]
            rows.append(
                {
                    "response_id": row[f"{side}_response_id"],
                    "prompt_id": row["prompt_id"],
                    "scorer": "rm",
                    "score": score,
                    "objectives": objectives,
                    "n_tokens": n,
                }
            )
    return pl.from_arrow(pa.Table.from_pylist(rows, schema=SCORES))


def hand_quantile(values, q):
    """Linear interpolation between order statistics at (n-1)·q (numpy's default), by hand."""
    s = sorted(values)
    h = (len(s) - 1) * q
    lo = math.floor(h)
    return s[lo] + (h - lo) * (s[min(lo + 1, len(s) - 1)] - s[lo])


def sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def hand_madpo(delta, tau=st.MADPO_TAU, c_max=2.0, c_min=0.5, lmbda=1.0):
    if delta <= -tau:
        return 1.0
    c = c_min + (c_max - c_min) / (
        1 + (c_max - 1) / (1 - c_min) * math.exp(lmbda * (abs(delta) - tau))
    )
    return sig(c * delta) / sig(delta)


def check_summary(summary, values):
    assert summary["n"] == len(values)
    assert summary["mean"] == pytest.approx(statistics.fmean(values), rel=1e-9, abs=1e-12)
    assert summary["std"] == pytest.approx(statistics.pstdev(values), rel=1e-9, abs=1e-12)
    for key, q in zip(st.QUANTILE_KEYS, st.QUANTILES, strict=True):
        assert summary[key] == pytest.approx(hand_quantile(values, q), rel=1e-9, abs=1e-12), key


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
    scale, shift, eta, tau_good, tau = 1.7, -0.4, 0.9, 1.5, 3.0
    stats = st.pair_statistics(
        pairs,
        transform=(scale, shift),
        eta=eta,
        tau_good=tau_good,
        madpo_tau=tau,
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
    check_summary(dist["madpo_weight"], [hand_madpo(scale * x, tau=tau) for x in m])
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
    weights = [hand_madpo(scale * x, tau=tau) for x in m]
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


def test_madpo_weight_hand_values():
    """Δ = 1, defaults: exp(1 − ln 999) = 0.0027210, c = 0.5 + 1.5/(1 + 2·0.0027210) = 1.9918812,
    w = σ(1.9918812)/σ(1) = 0.8799420/0.7310586 = 1.2036546. Δ = −1: w = σ(−1.9918812)/σ(−1)
    = 0.1200580/0.2689414 = 0.4464094. w = 1 at Δ = 0, at |Δ| = τ and for Δ ≤ −τ."""
    tau = math.log(999)
    w = st.madpo_weight(np.array([1.0, -1.0, 0.0, tau, -tau, -tau - 1.0, 10.0, 800.0]))
    assert w[:2] == pytest.approx([1.2036546, 0.4464094], abs=1e-6)
    assert w[2:6] == pytest.approx([1.0, 1.0, 1.0, 1.0], abs=1e-12)
    assert w[6] < 1.0 and np.isfinite(w).all()  # damped beyond τ; no overflow at huge margins
    assert st.w_qual(np.array([0.01, 0.0]), eta=0.7) == pytest.approx([0.5017500, 0.5], abs=1e-7)


def armorm_like(n=120, seed=1):
    """Raw ArmoRM-scale scores: 0.05–0.2, margins ≈ 0.01."""
    rng = np.random.default_rng(seed)
    rejected = rng.uniform(0.05, 0.18, n)
    chosen = rejected + np.abs(rng.normal(0.01, 0.005, n))
    return list(chosen), list(rejected)


def test_raw_armorm_margins_make_w_qual_constant():
    chosen, rejected = armorm_like()
    raw = st.pair_statistics(make_pairs(chosen, rejected), eta=0.7)
    found = find_warnings(raw)
    assert raw["w_qual"]["std"] < 0.002
    assert any(w.startswith("w_qual effectively constant") for w in found)
    assert any(w.startswith("MADPO weight effectively constant") for w in found)
    assert any(w.startswith("τ_good never active") for w in found)  # raw chosen scores ≤ 0.2 < 3.2
    spread = np.std(chosen + rejected)
    zscored = st.pair_statistics(make_pairs(chosen, rejected), eta=0.7, transform=(1 / spread, 0.0))
    assert not any("effectively constant" in w for w in find_warnings(zscored))


def test_tau_good_always_active():
    chosen, rejected = armorm_like()
    stats = st.pair_statistics(make_pairs(chosen, rejected), transform=(1.0, 10.0))
    assert stats["c_nll"]["active_fraction"] == 1.0
    assert any(w.startswith("τ_good always active") for w in find_warnings(stats))


def test_length_bias_warning():
    rng = np.random.default_rng(2)
    n = 150
    lengths = [tuple(int(v) for v in rng.integers(5, 200, 2)) for _ in range(n)]
    diff = np.array([c - r for c, r in lengths], dtype=float)
    rejected = rng.normal(0, 1, n)
    biased = make_pairs(
        list(rejected + 2.0 + 0.01 * diff + rng.normal(0, 0.2, n)), list(rejected), lengths=lengths
    )
    stats = st.pair_statistics(biased)
    assert stats["length"]["corr_margin_len_diff"] > 0.5
    assert any(w.startswith("strong length bias") for w in find_warnings(stats))
    fair = make_pairs(
        list(rejected + np.abs(rng.normal(1, 0.5, n))), list(rejected), lengths=lengths
    )
    assert not any("length bias" in w for w in find_warnings(st.pair_statistics(fair)))


def test_near_ties_few_pairs_and_broken_rows():
    chosen, rejected = [1.0] * 40, [1.0] * 12 + [0.0] * 28  # 30% exact ties
    found = find_warnings(st.pair_statistics(make_pairs(chosen, rejected, strategy="top_k_pairs")))
    assert any(w.startswith("many near-ties: 30%") for w in found)
    assert any(w.startswith("few pairs: 40 usable pairs") for w in found)
    assert any(w.startswith("few pairs per prompt") for w in found)  # top_k_pairs, 1 pair/prompt
    broken = make_pairs(
        [1.0, float("nan"), 0.0] + [2.0] * 60,
        [0.0, 0.0, 1.0] + [1.0] * 60,
        margin=[1.0, 0.0, -1.0] + [0.5] * 60,
    )
    stats = st.pair_statistics(broken)
    assert (
        stats["counts"]["non_finite"],
        stats["counts"]["negative_margin"],
        stats["counts"]["margin_mismatch"],
    ) == (1, 1, 60)
    assert stats["distributions"]["margin_raw"]["n"] == 62
    assert sum(w.startswith(("1 pairs", "60 pairs")) for w in find_warnings(stats)) == 3


def test_ks_statistic_hand_example():
    """a = [1, 2, 3], b = [2, 4]. F_a at 1, 2, 3, 4 = 1/3, 2/3, 1, 1; F_b = 0, 1/2, 1/2, 1;
    |differences| = 1/3, 1/6, 1/2, 0, so D = 1/2."""
    assert st.ks_statistic(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0])) == pytest.approx(0.5)
    assert st.ks_statistic(np.array([2.0, 4.0]), np.array([3.0, 1.0, 2.0])) == pytest.approx(0.5)
    assert st.ks_statistic(np.arange(10.0), np.arange(10.0)) == 0.0
    assert st.ks_statistic(np.zeros(5), np.ones(3)) == 1.0
    assert math.isnan(st.ks_statistic(np.zeros(0), np.ones(3)))


def brute_force_ks(a, b):
    """sup over every pooled value of |#(a ≤ x)/n − #(b ≤ x)/m|, counted with plain loops."""
    return max(
        abs(sum(v <= x for v in a) / len(a) - sum(v <= x for v in b) / len(b))
        for x in list(a) + list(b)
    )


def test_ks_statistic_matches_brute_force_with_ties():
    rng = np.random.default_rng(4)
    for _ in range(20):
        a, b = rng.integers(0, 8, rng.integers(1, 30)), rng.integers(2, 10, rng.integers(1, 30))
        assert st.ks_statistic(a, b) == pytest.approx(brute_force_ks(list(a), list(b)), abs=1e-12)


def test_ks_detects_a_shifted_distribution():
    """N(0,1) vs N(1,1): D → sup|Φ(x) − Φ(x − 1)| = 2Φ(1/2) − 1 = 0.38292."""
    rng = np.random.default_rng(5)
    a, b, c = rng.normal(0, 1, 4000), rng.normal(1, 1, 4000), rng.normal(0, 1, 4000)
    expected = 2 * 0.5 * (1 + math.erf(0.5 / math.sqrt(2))) - 1
    d = st.ks_statistic(a, b)
    assert d == pytest.approx(expected, abs=0.04)
    assert st.ks_pvalue(d, n=4000, m=4000) < 1e-10
    same = st.ks_statistic(a, c)
    assert same < 0.05 and st.ks_pvalue(same, n=4000, m=4000) > 0.001
    drift = st.drift(
        {k: a for k in st.DRIFT_NAMES}, {k: b for k in st.DRIFT_NAMES}, same_length_unit=False
    )
    assert set(drift) == {k for k in st.DRIFT_NAMES if not k.startswith("len_")}
    assert any(
        w.startswith("drift in margin_raw") for w in inspect_warnings._drift({"drift": drift})
    )


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
    result = build_pairs(
        paths["scores"],
        responses=paths["responses"],
        prompts=paths["prompts"],
        config=config,
        out_dir=root / "out",
    )
    return result, paths


def test_inspect_reads_the_pairs_stage_manifest(tmp_path):
    result, paths = write_stage_tables(tmp_path)
    manifest = Manifest.read(result.manifest)
    declared = manifest.extra["score_transform"]
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
