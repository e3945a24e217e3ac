"""Warnings that save GPU hours, read off `prefsmith.inspection.stats.pair_statistics`' dict.

Each check returns the warnings it finds (one line each, with the numbers behind it); its
docstring gives its threshold, all collected below.
"""

from __future__ import annotations

from collections.abc import Mapping

from prefsmith.inspection.drift import SCORE_QUANTITIES

# Warning thresholds (see the checks below).
CONSTANT_WEIGHT_STD = 0.02
LENGTH_CORR_MAX = 0.5
NEAR_TIE_MAX = 0.20
TOP_K_MIN_PAIRS_PER_PROMPT = 1.05
MIN_PAIRS = 50
DRIFT_KS_MAX = 0.2
DRIFT_P_MAX = 0.01


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}"


def _constant_weights(stats: Mapping) -> list[str]:
    """w_qual or the MADPO weight has std < CONSTANT_WEIGHT_STD (0.02): the weight scales the
    loss by one number, so it spends compute without reweighting anything (typical: raw ArmoRM
    margins ≈ 0.01 with η = 0.7 give w_qual ≈ 0.5 for every pair)."""
    out = []
    wq, md, s = stats["w_qual"], stats["madpo"], stats["settings"]
    if wq["n"] and wq["std"] is not None and wq["std"] < CONSTANT_WEIGHT_STD:
        out.append(
            f"w_qual effectively constant: std {_fmt(wq['std'])} < {CONSTANT_WEIGHT_STD} at "
            f"η={s['eta']:g} (mean {_fmt(wq['mean'])}); margins are on a small scale (normalization "
            f"{s['method']!r}): use pairs.normalization.method: zscore or a larger η "
            "(the unidpo term's params.eta; --eta previews one)"
        )
    if md["n"] and md["std"] is not None and md["std"] < CONSTANT_WEIGHT_STD:
        out.append(
            f"MADPO weight effectively constant: std {_fmt(md['std'])} < {CONSTANT_WEIGHT_STD} at "
            f"τ={s['madpo_tau']:.4g} (mean {_fmt(md['mean'])}); normalize scores or change τ "
            "(the madpo term's params.tau; --madpo-tau previews one)"
        )
    return out


def _tau_good(stats: Mapping) -> list[str]:
    """The c-NLL data condition S_w ≥ τ_good holds for no pair (fraction 0: the term never fires)
    or for every pair (fraction 1: it is plain NLL on all chosen responses)."""
    frac, tau = stats["c_nll"]["active_fraction"], stats["c_nll"]["tau_good"]
    top = stats["distributions"]["score_chosen_norm"]["q100"]
    fix = "lower --tau-good" + (
        " or normalize scores" if stats["settings"]["method"].startswith("none") else ""
    )
    if frac == 0.0:
        return [
            f"τ_good never active: no normalized chosen score ≥ τ_good={tau:g} (max {_fmt(top)}); "
            f"the c-NLL term will never fire: {fix}"
        ]
    if frac == 1.0:
        return [
            f"τ_good always active: every normalized chosen score ≥ τ_good={tau:g}; "
            "c-NLL acts as plain NLL on all chosen responses: raise --tau-good"
        ]
    return []


def _length_bias(stats: Mapping) -> list[str]:
    """|Pearson r(margin, length difference)| > LENGTH_CORR_MAX (0.5): the scorer mostly rewards
    length, and DPO will learn to write longer rather than better."""
    r = stats["length"]["corr_margin_len_diff"]
    if r is not None and abs(r) > LENGTH_CORR_MAX:
        return [
            f"strong length bias: corr(margin, chosen − rejected length) = {r:.2f} "
            f"(|r| > {LENGTH_CORR_MAX}, length in {stats['length']['unit']}); "
            "consider pairs.length_penalty or a length-controlled scorer"
        ]
    return []


def _near_ties(stats: Mapping) -> list[str]:
    """More than NEAR_TIE_MAX (20%) of pairs are near ties (|margin| < 1e-3·std of scores): their
    preference is scorer noise, so they teach nothing and add label noise."""
    rate = stats["ties"]["near_tie_rate"]
    if rate is not None and rate > NEAR_TIE_MAX:
        return [
            f"many near-ties: {rate:.0%} of pairs have |margin| < "
            f"{stats['ties']['near_tie_threshold']:.3g} (> {NEAR_TIE_MAX:.0%}); "
            "set pairs.min_margin"
        ]
    return []


def _few_pairs(stats: Mapping) -> list[str]:
    """Fewer than MIN_PAIRS (50) pairs in all, or a mean below TOP_K_MIN_PAIRS_PER_PROMPT (1.05)
    pairs per prompt when the strategy is top_k_pairs (which should give several per prompt)."""
    counts, out = stats["counts"], []
    if counts["pairs_used"] < MIN_PAIRS:
        out.append(
            f"few pairs: {counts['pairs_used']} usable pairs (< {MIN_PAIRS}); "
            "statistics and training will be noisy"
        )
    mean = stats["pairs_per_prompt"]["mean"]
    if (
        "top_k_pairs" in counts["strategies"]
        and mean is not None
        and mean < TOP_K_MIN_PAIRS_PER_PROMPT
    ):
        out.append(
            f"few pairs per prompt: {mean:.3f} on average with strategy top_k_pairs "
            f"(< {TOP_K_MIN_PAIRS_PER_PROMPT}); sample more responses per prompt"
        )
    return out


def _broken_rows(stats: Mapping) -> list[str]:
    """Any pair with a non-finite score, a negative margin, or a margin that is not
    score_chosen − score_rejected: the table was not made (or was edited) by the pairs stage."""
    counts, out = stats["counts"], []
    for key, text in (
        ("non_finite", "pairs with a null or non-finite score (left out)"),
        ("negative_margin", "pairs whose chosen score is below the rejected one"),
        ("margin_mismatch", "pairs whose margin != score_chosen − score_rejected"),
    ):
        if counts[key]:
            out.append(f"{counts[key]} {text}")
    return out


def _drifted(d: Mapping) -> bool:
    return d["ks"] is not None and d["ks"] > DRIFT_KS_MAX and (d["p_value"] or 0.0) < DRIFT_P_MAX


def _scorers_differ(stats: Mapping) -> list[str]:
    """The two compared tables were scored by different scorers: their scores, margins and
    weights are on different scales, so a KS between them measures the scorers, not drift."""
    scorers = stats.get("drift_scorers")
    if not scorers or scorers["same"]:
        return []
    return [
        f"compared tables were scored differently: {', '.join(scorers['current']) or '?'} vs "
        f"{', '.join(scorers['against']) or '?'} (against); score, margin and weight drift "
        "is not reported: rescore one table with the other's scorer to compare them"
    ]


def _drift(stats: Mapping) -> list[str]:
    """A quantity moved between the two tables: KS > DRIFT_KS_MAX (0.2) and p < DRIFT_P_MAX
    (0.01) — a rebuilt dataset that no longer looks like the one a model was tuned on. One
    warning per quantity (prefsmith.inspection.drift.QUANTITY: margin_raw, margin_norm and
    w_qual are monotone transforms of one margin), on its largest KS; none for the score
    quantities when the tables were scored differently (`_scorers_differ` says so instead)."""
    drift = stats.get("drift", {})
    differ = not stats.get("drift_scorers", {"same": True})["same"]
    by_quantity: dict[str, list[str]] = {}
    for name, d in drift.items():
        if _drifted(d) and not (differ and d["quantity"] in SCORE_QUANTITIES):
            by_quantity.setdefault(d["quantity"], []).append(name)
    out = []
    for quantity, names in by_quantity.items():
        top = max(names, key=lambda n: drift[n]["ks"])  # first of equal KS: DRIFT_NAMES order
        d, others = drift[top], [n for n in names if n != top]
        also = f"; {', '.join(others)} moved with it (the same {quantity})" if others else ""
        out.append(
            f"drift in {top}: KS = {d['ks']:.3f} (> {DRIFT_KS_MAX}, p = {_fmt(d['p_value'], 2)}){also}"
        )
    return out


def warnings(stats: Mapping) -> list[str]:
    """Every warning that the statistics call for, most costly first (each check documents its
    threshold): constant weights, τ_good never/always active, length bias, near ties, few pairs,
    broken rows, scorers that differ between compared tables, drift."""
    checks = (
        _constant_weights,
        _tau_good,
        _length_bias,
        _near_ties,
        _few_pairs,
        _broken_rows,
        _scorers_differ,
        _drift,
    )
    return [text for check in checks for text in check(stats)]
