"""Statistics of a pairs table that tell, before training, whether the weights will do anything.

Pure functions of polars frames and numpy arrays (no torch: `prefsmith inspect` must run where
only the data stack is installed). The weight formulas re-implement, in numpy, the ones the
trainer applies (shared/spec/losses.md), on scores after the manifest's declared transform
`normalized = scale * raw + shift` (prefsmith.curation.normalize):

| quantity      | formula                                                                  |
|---------------|--------------------------------------------------------------------------|
| w_qual        | σ(η·(S_w − S_l))                           Uni-DPO quality weight        |
| c-NLL active  | S_w ≥ τ_good   (data half of Uni-DPO's indicator; the policy half is only  |
|               | known during training, so this is an upper bound of the active fraction) |
| MADPO w       | σ(c(|Δ|)·Δ)/σ(Δ) for Δ > −τ else 1, c(|Δ|) = c_min + (c_max − c_min) /  |
|               | (1 + ((c_max − 1)/(1 − c_min))·exp(λ(|Δ| − τ)))     (arXiv 2510.05342)   |

Ties: a pair is an exact tie when its raw margin is 0, and a near tie when |margin| < 1e-3·std of
all its chosen and rejected raw scores (or an exact tie). The threshold is relative to the score
spread so it means the same on ArmoRM's 0.05–0.2 scale and on a z-scored one.

`pair_statistics` returns a JSON-serializable dict with stable keys (missing values are None):
counts, settings, distributions (each: n, mean, std, q0 q5 q25 q50 q75 q95 q100), ties,
pairs_per_prompt, length, w_qual, madpo, c_nll, objectives, and (when compared) drift.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import polars as pl

QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
QUANTILE_KEYS = ("q0", "q5", "q25", "q50", "q75", "q95", "q100")
ETA = 0.7  # Uni-DPO released configs
TAU_GOOD = 3.2  # Uni-DPO released configs (general); math configs use 8.0
MADPO_TAU = math.log(999)  # ≈ 6.9068, MADPO default
C_MAX, C_MIN, LMBDA = 2.0, 0.5, 1.0  # MADPO defaults
NEAR_TIE_REL = 1e-3  # near tie: |margin| < NEAR_TIE_REL * std(scores)

# Distributions compared between two tables with `--against` (lengths only in the same unit).
DRIFT_NAMES = (
    "score_chosen",
    "score_rejected",
    "margin_raw",
    "margin_norm",
    "w_qual",
    "madpo_weight",
    "len_chosen",
    "len_rejected",
    "len_diff",
)


@dataclass(frozen=True)
class PairColumns:
    """The per-pair numbers every statistic and chart is computed from; arrays are shape (P,)."""

    score_chosen: np.ndarray
    score_rejected: np.ndarray
    margin_raw: np.ndarray
    len_chosen: np.ndarray
    len_rejected: np.ndarray
    length_unit: str
    pairs_per_prompt: np.ndarray  # (Q,) pairs of each prompt
    scale: float = 1.0
    shift: float = 0.0
    non_finite: int = 0  # pairs left out: a null or non-finite score or margin
    margin_mismatch: int = 0  # pairs whose margin != score_chosen - score_rejected
    strategies: dict[str, int] = field(default_factory=dict)
    objectives: pl.DataFrame | None = None  # long: name, chosen, rejected (one row per pair)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """σ(x) without overflow warnings for large |x|."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))  # (P,) in (0, 1]
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def w_qual(margin_norm: np.ndarray, *, eta: float = ETA) -> np.ndarray:
    """Uni-DPO's quality weight σ(η·(S_w − S_l)) on normalized margins; shape (P,)."""
    return sigmoid(eta * np.asarray(margin_norm, dtype=np.float64))


def madpo_weight(
    margin_norm: np.ndarray,
    *,
    tau: float = MADPO_TAU,
    c_max: float = C_MAX,
    c_min: float = C_MIN,
    lmbda: float = LMBDA,
) -> np.ndarray:
    """MADPO's per-pair weight w(Δ) (spec/losses.md `madpo`): 1 at Δ=0 and |Δ|=τ, 1 for Δ ≤ −τ."""
    delta = np.asarray(margin_norm, dtype=np.float64)  # (P,)
    ratio = (c_max - 1.0) / (1.0 - c_min)
    exponent = np.minimum(lmbda * (np.abs(delta) - tau), 700.0)  # (P,) avoid exp overflow
    c = c_min + (c_max - c_min) / (1.0 + ratio * np.exp(exponent))  # (P,)
    return np.where(delta > -tau, sigmoid(c * delta) / sigmoid(delta), 1.0)


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov–Smirnov statistic D = sup_x |F_a(x) − F_b(x)| (NaN if one is empty).

    Both empirical CDFs are right-continuous step functions, so the supremum is reached at one
    of the pooled sample values; evaluating both CDFs there with a sorted search is exact.
    """
    a = np.sort(np.asarray(a, dtype=np.float64))
    b = np.sort(np.asarray(b, dtype=np.float64))
    if a.size == 0 or b.size == 0:
        return float("nan")
    points = np.concatenate([a, b])  # (n + m,)
    cdf_a = np.searchsorted(a, points, side="right") / a.size
    cdf_b = np.searchsorted(b, points, side="right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))


def ks_pvalue(d: float, *, n: int, m: int) -> float:
    """Asymptotic p-value of a two-sample KS statistic (Kolmogorov series, Stephens' correction).

    Approximate for small samples; enough to rank drifts, not to publish a test.
    """
    if not (n and m) or math.isnan(d):
        return float("nan")
    en = math.sqrt(n * m / (n + m))
    lam = (en + 0.12 + 0.11 / en) * d
    if lam < 0.2:
        return 1.0  # the series is 1 to 1e-10 here and converges slowly
    total = sum(2.0 * (-1) ** (k - 1) * math.exp(-2.0 * k * k * lam * lam) for k in range(1, 101))
    return float(min(max(total, 0.0), 1.0))


def _number(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def summarize(values: np.ndarray) -> dict[str, float | int | None]:
    """n, mean, std (population) and the QUANTILES (numpy 'linear') of the finite values."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"n": 0, "mean": None, "std": None} | dict.fromkeys(QUANTILE_KEYS)
    qs = np.quantile(values, QUANTILES)
    out: dict[str, float | int | None] = {
        "n": int(values.size),
        "mean": _number(values.mean()),
        "std": _number(values.std()),
    }
    return out | {k: _number(q) for k, q in zip(QUANTILE_KEYS, qs, strict=True)}


def word_counts(texts: pl.Series) -> np.ndarray:
    """Whitespace-separated words per text (the length unit when no token counts are given).

    A polars regex; about 10 µs per 500-character text (a numpy byte scan was no faster).
    """
    return texts.fill_null("").str.count_matches(r"\S+").cast(pl.Float64).to_numpy()


def _token_lengths(
    pairs: pl.DataFrame, scores: pl.DataFrame
) -> tuple[np.ndarray, np.ndarray] | None:
    """scores.n_tokens of each pair's chosen and rejected response, joined on ids (None if any is missing)."""
    tokens = scores.filter(pl.col("scorer").is_in(pairs["scorer"].unique().implode()))
    tokens = tokens.select("response_id", "n_tokens").unique("response_id", keep="first")
    side = {}
    for name in ("chosen", "rejected"):
        joined = pairs.select(pl.col(f"{name}_response_id").alias("response_id")).join(
            tokens, on="response_id", how="left", maintain_order="left"
        )
        side[name] = joined["n_tokens"].cast(pl.Float64).to_numpy()
    if np.isnan(side["chosen"]).any() or np.isnan(side["rejected"]).any():
        return None
    return side["chosen"], side["rejected"]


def _objectives(pairs: pl.DataFrame, scores: pl.DataFrame) -> pl.DataFrame | None:
    """Long frame (name, chosen, rejected): each pair's per-objective values, joined on ids."""
    scored = scores.filter(pl.col("scorer").is_in(pairs["scorer"].unique().implode()))
    long = (
        scored.select("response_id", "objectives")
        .unique("response_id", keep="first")
        .explode("objectives")
        .drop_nulls("objectives")
        .unnest("objectives")
    )
    if long.height == 0:
        return None
    ids = pairs.select("chosen_response_id", "rejected_response_id")
    chosen = ids.join(
        long.rename({"response_id": "chosen_response_id", "value": "chosen"}),
        on="chosen_response_id",
    )
    both = chosen.join(
        long.rename({"response_id": "rejected_response_id", "value": "rejected"}),
        on=["rejected_response_id", "name"],
    )
    return both.select("name", "chosen", "rejected").sort("name", maintain_order=True)


def pair_columns(
    pairs: pl.DataFrame,
    *,
    scores: pl.DataFrame | None = None,
    transform: tuple[float, float] = (1.0, 0.0),
) -> PairColumns:
    """Extract the per-pair numbers from a PAIRS frame (and optionally a SCORES frame).

    Pairs with a null or non-finite score or margin are left out and counted in `non_finite`.
    Lengths are `scores.n_tokens` (prompt + response tokens the scorer saw; their difference is
    the response-length difference) when every pair's two responses are found there, otherwise
    whitespace word counts of the texts.
    """
    finite = pl.all_horizontal(
        pl.col(c).is_not_null() & pl.col(c).is_finite()
        for c in ("score_chosen", "score_rejected", "margin")
    )
    kept = pairs.filter(finite)
    sc, sr = kept["score_chosen"].to_numpy(), kept["score_rejected"].to_numpy()  # (P,)
    margin = kept["margin"].to_numpy()  # (P,)
    mismatch = np.abs(margin - (sc - sr)) > 1e-9 * np.maximum(1.0, np.abs(margin))
    tokens = _token_lengths(kept, scores) if scores is not None else None
    if tokens is not None:
        (lc, lr), unit = tokens, "tokens (scores.n_tokens: prompt + response)"
    else:
        lc, lr, unit = word_counts(kept["chosen"]), word_counts(kept["rejected"]), "words"
    per_prompt = kept.group_by("prompt_id").len()["len"].to_numpy()  # (Q,)
    strategies = dict(kept.group_by("strategy").len().sort("strategy").iter_rows())
    return PairColumns(
        score_chosen=sc,
        score_rejected=sr,
        margin_raw=margin,
        len_chosen=lc,
        len_rejected=lr,
        length_unit=unit,
        pairs_per_prompt=per_prompt,
        scale=float(transform[0]),
        shift=float(transform[1]),
        non_finite=pairs.height - kept.height,
        margin_mismatch=int(mismatch.sum()),
        strategies={str(k): int(v) for k, v in strategies.items()},
        objectives=_objectives(kept, scores) if scores is not None else None,
    )


def distributions(
    columns: PairColumns,
    *,
    eta: float = ETA,
    madpo_tau: float = MADPO_TAU,
    c_max: float = C_MAX,
    c_min: float = C_MIN,
    lmbda: float = LMBDA,
) -> dict[str, np.ndarray]:
    """Every per-pair distribution by name (all shape (P,)); normalized = scale·raw + shift."""
    margin_norm = columns.scale * columns.margin_raw  # (P,) the shift cancels in a difference
    return {
        "score_chosen": columns.score_chosen,
        "score_rejected": columns.score_rejected,
        "score_chosen_norm": columns.scale * columns.score_chosen + columns.shift,
        "score_rejected_norm": columns.scale * columns.score_rejected + columns.shift,
        "margin_raw": columns.margin_raw,
        "margin_norm": margin_norm,
        "w_qual": w_qual(margin_norm, eta=eta),
        "madpo_weight": madpo_weight(
            margin_norm, tau=madpo_tau, c_max=c_max, c_min=c_min, lmbda=lmbda
        ),
        "len_chosen": columns.len_chosen,
        "len_rejected": columns.len_rejected,
        "len_diff": columns.len_chosen - columns.len_rejected,
    }


def _fraction(mask: np.ndarray) -> float | None:
    return float(mask.mean()) if mask.size else None


def _ties(columns: PairColumns) -> dict[str, float | None]:
    """Exact-tie and near-tie rates (near: |margin| < NEAR_TIE_REL·std of all scores, or 0)."""
    spread = (
        np.concatenate([columns.score_chosen, columns.score_rejected]).std()
        if columns.margin_raw.size
        else 0.0
    )
    threshold = NEAR_TIE_REL * float(spread)
    margin = np.abs(columns.margin_raw)
    return {
        "tie_rate": _fraction(margin == 0.0),
        "near_tie_rate": _fraction((margin < threshold) | (margin == 0.0)),
        "near_tie_threshold": threshold,
    }


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    if x.size < 2 or x.std() == 0 or y.std() == 0:
        return None
    return _number(np.corrcoef(x, y)[0, 1])


def objective_statistics(objectives: pl.DataFrame | None) -> dict[str, dict]:
    """Per objective: chosen, rejected and margin distributions, and the fraction of pairs whose
    objective margin is > 0 (the objective agrees with the overall preference)."""
    if objectives is None:
        return {}
    out = {}
    for (name,), group in objectives.group_by("name", maintain_order=True):
        chosen, rejected = group["chosen"].to_numpy(), group["rejected"].to_numpy()  # (P,)
        margin = chosen - rejected  # (P,)
        out[str(name)] = {
            "chosen": summarize(chosen),
            "rejected": summarize(rejected),
            "margin": summarize(margin),
            "agreement": _fraction(margin[np.isfinite(margin)] > 0),
        }
    return dict(sorted(out.items()))


def _counts(columns: PairColumns, manifest: Mapping | None) -> dict:
    manifest = manifest or {}
    return {
        "pairs": int(columns.margin_raw.size) + columns.non_finite,
        "pairs_used": int(columns.margin_raw.size),
        "prompts": int(columns.pairs_per_prompt.size),
        "non_finite": columns.non_finite,
        "margin_mismatch": columns.margin_mismatch,
        "negative_margin": int((columns.margin_raw < 0).sum()),
        "strategies": columns.strategies,
        "prompts_in": manifest.get("rows_in"),
        "prompts_out": manifest.get("rows_out"),
        "dropped": dict(manifest.get("dropped", {})),
    }


def statistics_from_columns(
    columns: PairColumns,
    *,
    eta: float = ETA,
    tau_good: float = TAU_GOOD,
    madpo_tau: float = MADPO_TAU,
    c_max: float = C_MAX,
    c_min: float = C_MIN,
    lmbda: float = LMBDA,
    manifest: Mapping | None = None,
    method: str = "none",
) -> dict:
    """The statistics dict (see the module docstring) of already extracted columns."""
    dists = distributions(
        columns, eta=eta, madpo_tau=madpo_tau, c_max=c_max, c_min=c_min, lmbda=lmbda
    )
    weight = dists["madpo_weight"]
    return {
        "counts": _counts(columns, manifest),
        "settings": {
            "eta": eta,
            "tau_good": tau_good,
            "madpo_tau": madpo_tau,
            "c_max": c_max,
            "c_min": c_min,
            "lmbda": lmbda,
            "scale": columns.scale,
            "shift": columns.shift,
            "method": method,
        },
        "distributions": {name: summarize(values) for name, values in dists.items()},
        "ties": _ties(columns),
        "pairs_per_prompt": summarize(columns.pairs_per_prompt),
        "length": {
            "unit": columns.length_unit,
            "corr_margin_len_diff": _pearson(columns.margin_raw, dists["len_diff"]),
        },
        "w_qual": {"eta": eta} | summarize(dists["w_qual"]),
        "madpo": {
            "tau": madpo_tau,
            "frac_amplified": _fraction(weight > 1.0 + 1e-12),
            "frac_damped": _fraction(weight < 1.0 - 1e-12),
        }
        | summarize(weight),
        "c_nll": {
            "tau_good": tau_good,
            "active_fraction": _fraction(dists["score_chosen_norm"] >= tau_good),
        },
        "objectives": objective_statistics(columns.objectives),
    }


def pair_statistics(
    pairs: pl.DataFrame,
    *,
    scores: pl.DataFrame | None = None,
    transform: tuple[float, float] = (1.0, 0.0),
    eta: float = ETA,
    tau_good: float = TAU_GOOD,
    madpo_tau: float = MADPO_TAU,
    c_max: float = C_MAX,
    c_min: float = C_MIN,
    lmbda: float = LMBDA,
    manifest: Mapping | None = None,
    method: str = "none",
) -> dict:
    """Statistics of a PAIRS frame: `pair_columns` then `statistics_from_columns`.

    `transform` is (scale, shift) of the declared normalization (the pairs manifest's
    `extra.score_transform`); `manifest` is the pairs manifest as a dict (rows_in, rows_out,
    dropped) when there is one; `method` names the normalization for the report.
    """
    columns = pair_columns(pairs, scores=scores, transform=transform)
    return statistics_from_columns(
        columns,
        eta=eta,
        tau_good=tau_good,
        madpo_tau=madpo_tau,
        c_max=c_max,
        c_min=c_min,
        lmbda=lmbda,
        manifest=manifest,
        method=method,
    )


def drift(
    current: Mapping[str, np.ndarray],
    against: Mapping[str, np.ndarray],
    *,
    same_length_unit: bool = True,
) -> dict[str, dict]:
    """KS statistic and asymptotic p-value per distribution in DRIFT_NAMES, current vs older.

    Length distributions are compared only when both tables measured length in the same unit.
    """
    out = {}
    for name in DRIFT_NAMES:
        if name.startswith("len_") and not same_length_unit:
            continue
        a, b = (np.asarray(x[name], dtype=np.float64) for x in (current, against))
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        d = ks_statistic(a, b)
        out[name] = {
            "ks": _number(d),
            "p_value": _number(ks_pvalue(d, n=a.size, m=b.size)),
            "n": int(a.size),
            "n_against": int(b.size),
        }
    return out
