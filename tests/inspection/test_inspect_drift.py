"""Drift between two pairs tables (inspection/drift.py): scipy's KS test against hand-worked
examples, a brute-force count and an exact permutation p-value; one warning per quantity (not one
per monotone transform of it); the scorers of each compared table, and a warning when they differ."""

from __future__ import annotations

import itertools
import math

import numpy as np
import polars as pl
import pytest
from inspect_cases import make_pairs
from scipy.stats import ks_2samp

from prefsmith.inspection import stats as st
from prefsmith.inspection import warnings as inspect_warnings
from prefsmith.inspection.drift import DRIFT_NAMES, QUANTITY, drift, ks_test, scorer_comparison
from prefsmith.inspection.report import render_html


def test_ks_statistic_hand_example():
    """a = [1, 2, 3], b = [2, 4]. F_a at 1, 2, 3, 4 = 1/3, 2/3, 1, 1; F_b = 0, 1/2, 1/2, 1;
    |differences| = 1/3, 1/6, 1/2, 0, so D = 1/2."""
    assert ks_test(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0]))[0] == pytest.approx(0.5)
    assert ks_test(np.array([2.0, 4.0]), np.array([3.0, 1.0, 2.0]))[0] == pytest.approx(0.5)
    assert ks_test(np.arange(10.0), np.arange(10.0))[0] == 0.0
    assert ks_test(np.zeros(5), np.ones(3))[0] == 1.0
    assert all(math.isnan(x) for x in ks_test(np.zeros(0), np.ones(3)))


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
        assert ks_test(a, b)[0] == pytest.approx(brute_force_ks(list(a), list(b)), abs=1e-12)


def test_small_sample_p_value_is_the_exact_permutation_one():
    """a = [0.5, 1.5, 4.5, 5.5], b = [2.5, 3.5, 6.5, 7.5, 8.5]: D = 0.6. Over all C(9, 4) = 126
    ways to split the 9 pooled values, p = the fraction whose D ≥ 0.6 (no ties: scipy is exact)."""
    a, b = [0.5, 1.5, 4.5, 5.5], [2.5, 3.5, 6.5, 7.5, 8.5]
    d, p = ks_test(np.array(a), np.array(b))
    assert d == pytest.approx(brute_force_ks(a, b)) == pytest.approx(0.6)
    pooled = a + b
    splits = [
        brute_force_ks([pooled[i] for i in idx], [v for i, v in enumerate(pooled) if i not in idx])
        for idx in itertools.combinations(range(9), 4)
    ]
    assert p == pytest.approx(sum(s >= d - 1e-12 for s in splits) / len(splits), abs=1e-12)


def _tables(seed: int, *, shift: float = 0.0, n: int = 300, scorer: str = "rm"):
    rng = np.random.default_rng(seed)
    rejected = rng.normal(0.0, 1.0, n)
    chosen = rejected + np.abs(rng.normal(1.0 + shift, 0.5, n))
    lengths = [(int(c), int(r)) for c, r in rng.integers(5, 60, (n, 2))]
    pairs = make_pairs(list(chosen), list(rejected), lengths=lengths).with_columns(
        scorer=pl.lit(scorer)
    )
    return pairs, st.pair_columns(pairs, transform=(0.5, 0.0))


def test_every_number_equals_scipys_own_on_fixed_data():
    """Both samples of each distribution through scipy.stats.ks_2samp directly: same D and p."""
    _, new = _tables(0)
    _, old = _tables(1, shift=1.0, n=250)
    current, against = st.distributions(new), st.distributions(old)
    result = drift(current, against)
    assert list(result) == list(DRIFT_NAMES)
    for name, d in result.items():
        ref = ks_2samp(current[name], against[name])
        assert (d["ks"], d["p_value"]) == (float(ref.statistic), float(ref.pvalue)), name
        assert (d["n"], d["n_against"], d["quantity"]) == (300, 250, QUANTITY[name])
    assert result["margin_raw"]["p_value"] < 1e-6 and result["len_chosen"]["p_value"] > 0.01


def test_ks_detects_a_shifted_distribution():
    """N(0,1) vs N(1,1): D → sup|Φ(x) − Φ(x − 1)| = 2Φ(1/2) − 1 = 0.38292."""
    rng = np.random.default_rng(5)
    a, b, c = rng.normal(0, 1, 4000), rng.normal(1, 1, 4000), rng.normal(0, 1, 4000)
    expected = 2 * 0.5 * (1 + math.erf(0.5 / math.sqrt(2))) - 1
    d, p = ks_test(a, b)
    assert d == pytest.approx(expected, abs=0.04) and p < 1e-10
    same, p_same = ks_test(a, c)
    assert same < 0.05 and p_same > 0.001
    drifted = drift(
        {k: a for k in DRIFT_NAMES}, {k: b for k in DRIFT_NAMES}, same_length_unit=False
    )
    assert set(drifted) == {k for k in DRIFT_NAMES if not k.startswith("len_")}


def test_one_warning_per_quantity_not_per_monotone_transform():
    """The margin moved: margin_raw, margin_norm (0.5·raw) and w_qual (σ(η·norm)) all have the
    same KS above the threshold, yet one margin warning names the other two. The MADPO weight
    (not monotone in the margin) and the chosen score are other quantities: their own lines."""
    _, new = _tables(0)
    _, old = _tables(1, shift=1.0, n=250)
    result = drift(st.distributions(new), st.distributions(old))
    margin = [n for n, q in QUANTITY.items() if q == "margin"]
    assert len({result[n]["ks"] for n in margin}) == 1 and result["margin_raw"]["ks"] > 0.2
    found = inspect_warnings._drift({"drift": result})
    assert sum("margin" in w.split(":")[0] for w in found) == 1  # negative control: 3 drifted
    line = next(w for w in found if w.startswith("drift in margin_raw"))
    assert "margin_norm, w_qual moved with it (the same margin)" in line
    heads = sorted(w.split(":")[0] for w in found)
    assert heads == ["drift in madpo_weight", "drift in margin_raw", "drift in score_chosen"]


def test_scorers_are_named_and_a_difference_is_warned_about_once():
    """Different scorers: one line says so and no score-derived drift is reported (it would
    measure the scorers); length drift still is. Same scorer: no such line, drift reported."""
    new_pairs, new = _tables(0, scorer="armo@rev1")
    _, old = _tables(1, shift=1.0, n=250, scorer="tiny-rm@rev9")
    stats = st.statistics_from_columns(new)
    current, against = st.distributions(new), st.distributions(old)
    against = dict(against, len_chosen=against["len_chosen"] + 30.0)  # lengths moved too
    stats["drift"] = drift(current, against)
    stats["drift_scorers"] = scorer_comparison(new_pairs["scorer"], ["tiny-rm@rev9"])
    found = inspect_warnings.warnings(stats)
    mismatch = [w for w in found if w.startswith("compared tables were scored differently")]
    assert mismatch == [
        "compared tables were scored differently: armo@rev1 vs tiny-rm@rev9 (against); "
        "score, margin and weight drift is not reported: rescore one table with the other's "
        "scorer to compare them"
    ]
    assert [w.split(":")[0] for w in found if w.startswith("drift in")] == ["drift in len_chosen"]
    page = render_html(stats, warnings=found, arrays=current, against=against)
    assert "scored by: armo@rev1 (current) · tiny-rm@rev9 (against) — DIFFERENT scorers" in page
    stats["drift_scorers"] = scorer_comparison(["armo@rev1"], ["armo@rev1"])
    same = inspect_warnings.warnings(stats)
    assert not any("scored differently" in w for w in same)
    assert any(w.startswith("drift in margin_raw") for w in same)
