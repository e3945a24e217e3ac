"""Inspect's warnings (inspection/warnings.py) on crafted tables: each fires where its threshold
says, with the numbers behind it, and stays quiet on a table that is fine."""

from __future__ import annotations

import numpy as np
from inspect_cases import armorm_like, make_pairs

from prefsmith.inspection import stats as st
from prefsmith.inspection.warnings import warnings as find_warnings
from prefsmith.schemas.losses import UniDPOParams


def test_raw_armorm_margins_make_w_qual_constant():
    chosen, rejected = armorm_like()
    raw = st.pair_statistics(make_pairs(chosen, rejected), unidpo=UniDPOParams(eta=0.7))
    found = find_warnings(raw)
    assert raw["w_qual"]["std"] < 0.002
    assert any(w.startswith("w_qual effectively constant") for w in found)
    assert any(w.startswith("MADPO weight effectively constant") for w in found)
    assert any(w.startswith("τ_good never active") for w in found)  # raw chosen scores ≤ 0.2 < 3.2
    spread = np.std(chosen + rejected)
    zscored = st.pair_statistics(make_pairs(chosen, rejected), transform=(1 / spread, 0.0))
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
