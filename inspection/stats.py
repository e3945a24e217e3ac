"""Statistics of a pairs table that tell, before training, whether the weights will do anything.

Pure functions of polars frames and numpy arrays (no torch: `prefsmith inspect` must run where
only the data stack is installed), on scores after the manifest's declared transform
`normalized = scale * raw + shift` (prefsmith.curation.normalize). The weights are previewed with
the loss parameters the train config will use (`prefsmith.schemas.losses`; the models' defaults
when none is given), by the numpy formulas of `prefsmith.inspection.weights`:

| quantity      | formula                                                                  |
|---------------|--------------------------------------------------------------------------|
| w_qual        | σ(η·(S_w − S_l))                           Uni-DPO quality weight        |
| c-NLL active  | S_w ≥ τ_good   (data half of Uni-DPO's indicator; the policy half is only  |
|               | known during training, so this is an upper bound of the active fraction) |
| MADPO w       | σ(c(|Δ|)·Δ)/σ(Δ) for Δ > −τ else 1                  (arXiv 2510.05342)   |

Ties: a pair is an exact tie when its raw margin is 0, and a near tie when |margin| < 1e-3·std of
all its chosen and rejected raw scores (or an exact tie). The threshold is relative to the score
spread so it means the same on ArmoRM's 0.05–0.2 scale and on a z-scored one.

`pair_statistics` returns a JSON-serializable dict with stable keys (missing values are None):
counts, settings, distributions (each: n, mean, std, q0 q5 q25 q50 q75 q95 q100), ties,
pairs_per_prompt, length, w_qual, madpo, c_nll, objectives (each with its Spearman ρ with the
score), gating (ArmoRM gating weights: mean and dominant share), and (when compared) drift (per
distribution, prefsmith.inspection.drift.drift) and drift_scorers (each table's scorers,
prefsmith.inspection.drift.scorer_comparison).
`settings` holds the previewed parameters: eta and tau_good (Uni-DPO η, τ_good), madpo_tau,
c_max, c_min and madpo_lam (MADPO τ, c_max, c_min, λ), and the transform.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl
from scipy.stats import spearmanr

from prefsmith.inspection.columns import PairColumns, pair_columns
from prefsmith.inspection.drift import DRIFT_NAMES, drift, scorer_comparison
from prefsmith.inspection.summary import QUANTILE_KEYS, finite_or_none, summarize
from prefsmith.inspection.weights import madpo_weight, preview_weights, w_qual
from prefsmith.schemas.losses import MADPOParams, UniDPOParams

GATE = "gate/"  # ArmoRM's gating weights ride in the objectives as gate/<objective>

# Importers read these from here too (the report, the inspect stage, --against).
__all__ = [
    "DRIFT_NAMES",
    "QUANTILE_KEYS",
    "PairColumns",
    "distributions",
    "drift",
    "madpo_weight",
    "gating_statistics",
    "objective_statistics",
    "pair_columns",
    "pair_statistics",
    "scorer_comparison",
    "statistics_from_columns",
    "w_qual",
]

NEAR_TIE_REL = 1e-3  # near tie: |margin| < NEAR_TIE_REL * std(scores)


def distributions(
    columns: PairColumns,
    *,
    unidpo: UniDPOParams | None = None,
    madpo: MADPOParams | None = None,
) -> dict[str, np.ndarray]:
    """Every per-pair distribution by name (all shape (P,)); normalized = scale·raw + shift.

    The weights use `unidpo` and `madpo` (None: the params models' defaults).
    """
    margin_norm = columns.scale * columns.margin_raw  # (P,) the shift cancels in a difference
    weights = preview_weights(
        margin_norm, unidpo=unidpo or UniDPOParams(), madpo=madpo or MADPOParams()
    )
    return {
        "score_chosen": columns.score_chosen,
        "score_rejected": columns.score_rejected,
        "score_chosen_norm": columns.scale * columns.score_chosen + columns.shift,
        "score_rejected_norm": columns.scale * columns.score_rejected + columns.shift,
        "margin_raw": columns.margin_raw,
        "margin_norm": margin_norm,
        "w_qual": weights["w_qual"],
        "madpo_weight": weights["madpo_weight"],
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
    return finite_or_none(np.corrcoef(x, y)[0, 1])


def _spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3 or np.ptp(x[keep]) == 0 or np.ptp(y[keep]) == 0:
        return None
    return finite_or_none(spearmanr(x[keep], y[keep]).statistic)


def objective_statistics(objectives: pl.DataFrame | None) -> dict[str, dict]:
    """Per objective: chosen, rejected and margin distributions, the fraction of pairs whose
    objective margin is > 0 (the objective agrees with the overall preference), and the Spearman
    ρ of its values with the overall score over every response of the pairs (scipy)."""
    if objectives is None:
        return {}
    out = {}
    for (name,), group in objectives.group_by("name", maintain_order=True):
        chosen, rejected = group["chosen"].to_numpy(), group["rejected"].to_numpy()  # (P,)
        margin = chosen - rejected  # (P,)
        values = np.concatenate([chosen, rejected])  # (2P,)
        scores = np.concatenate(
            [group["score_chosen"].to_numpy(), group["score_rejected"].to_numpy()]
        )
        out[str(name)] = {
            "chosen": summarize(chosen),
            "rejected": summarize(rejected),
            "margin": summarize(margin),
            "agreement": _fraction(margin[np.isfinite(margin)] > 0),
            "score_spearman": _spearman(values, scores),
        }
    return dict(sorted(out.items()))


def gating_statistics(objectives: pl.DataFrame | None) -> dict[str, dict]:
    """ArmoRM's gating weights (objectives named `gate/<objective>`): per objective, the mean
    weight over every response of the pairs and the share of responses it weighs most."""
    if objectives is None:
        return {}
    gates = objectives.filter(pl.col("name").str.starts_with(GATE))
    if gates.height == 0:
        return {}
    long = pl.concat(
        [gates.select("pair", "name", pl.col(side).alias("weight"), pl.lit(side).alias("side"))
         for side in ("chosen", "rejected")]
    )  # fmt: skip
    top = long.sort("weight", descending=True).unique(["pair", "side"], keep="first")
    responses = top.height
    dominant = dict(top.group_by("name").len().iter_rows())
    means = dict(long.group_by("name").agg(pl.col("weight").mean()).iter_rows())
    return {
        str(name).removeprefix(GATE): {
            "mean_weight": finite_or_none(means[name]),
            "dominant_share": dominant.get(name, 0) / responses,
        }
        for name in sorted(means)
    }


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


def _settings(
    columns: PairColumns, *, unidpo: UniDPOParams, madpo: MADPOParams, method: str
) -> dict:
    """The previewed loss parameters and the score transform, as the report shows them."""
    return {
        "eta": unidpo.eta,
        "tau_good": unidpo.tau_good,
        "madpo_tau": madpo.tau,
        "c_max": madpo.c_max,
        "c_min": madpo.c_min,
        "madpo_lam": madpo.lam,
        "scale": columns.scale,
        "shift": columns.shift,
        "method": method,
    }


def _weight_statistics(
    dists: Mapping[str, np.ndarray], *, unidpo: UniDPOParams, madpo: MADPOParams
) -> dict:
    """The w_qual, madpo and c_nll sections: each weight's summary and what it would do."""
    weight = dists["madpo_weight"]
    return {
        "w_qual": {"eta": unidpo.eta} | summarize(dists["w_qual"]),
        "madpo": {
            "tau": madpo.tau,
            "frac_amplified": _fraction(weight > 1.0 + 1e-12),
            "frac_damped": _fraction(weight < 1.0 - 1e-12),
        }
        | summarize(weight),
        "c_nll": {
            "tau_good": unidpo.tau_good,
            "active_fraction": _fraction(dists["score_chosen_norm"] >= unidpo.tau_good),
        },
    }


def statistics_from_columns(
    columns: PairColumns,
    *,
    unidpo: UniDPOParams | None = None,
    madpo: MADPOParams | None = None,
    manifest: Mapping | None = None,
    method: str = "none",
) -> dict:
    """The statistics dict (see the module docstring) of already extracted columns.

    `unidpo` / `madpo` are the loss parameters the weights are previewed with (None: defaults).
    """
    unidpo, madpo = unidpo or UniDPOParams(), madpo or MADPOParams()
    dists = distributions(columns, unidpo=unidpo, madpo=madpo)
    return {
        "counts": _counts(columns, manifest),
        "settings": _settings(columns, unidpo=unidpo, madpo=madpo, method=method),
        "distributions": {name: summarize(values) for name, values in dists.items()},
        "ties": _ties(columns),
        "pairs_per_prompt": summarize(columns.pairs_per_prompt),
        "length": {
            "unit": columns.length_unit,
            "corr_margin_len_diff": _pearson(columns.margin_raw, dists["len_diff"]),
        },
        **_weight_statistics(dists, unidpo=unidpo, madpo=madpo),
        "objectives": objective_statistics(columns.objectives),
        "gating": gating_statistics(columns.objectives),
    }


def pair_statistics(
    pairs: pl.DataFrame,
    *,
    scores: pl.DataFrame | None = None,
    transform: tuple[float, float] = (1.0, 0.0),
    unidpo: UniDPOParams | None = None,
    madpo: MADPOParams | None = None,
    manifest: Mapping | None = None,
    method: str = "none",
) -> dict:
    """Statistics of a PAIRS frame: `pair_columns` then `statistics_from_columns`.

    `transform` is (scale, shift) of the declared normalization (the pairs manifest's
    `extra.score_transform`); `unidpo` / `madpo` the loss parameters of the weight previews
    (the train config's terms; None: the models' defaults); `manifest` is the pairs manifest as a
    dict (rows_in, rows_out, dropped) when there is one; `method` names the normalization.
    """
    columns = pair_columns(pairs, scores=scores, transform=transform)
    return statistics_from_columns(
        columns, unidpo=unidpo, madpo=madpo, manifest=manifest, method=method
    )
