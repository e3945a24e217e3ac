"""Tables and independent oracles shared by the inspection tests: PAIRS and SCORES frames built
row by row, and stdlib-math restatements of the quantiles and weights inspect computes."""

from __future__ import annotations

import math
import statistics

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from prefsmith.inspection.summary import QUANTILE_KEYS, QUANTILES
from prefsmith.schemas.tables import PAIRS, SCORES

OBJECTIVES = ("helpfulness", "correctness", "verbosity")
TAU = math.log(999.0)  # MADPO's τ in the paper


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


def hand_madpo(delta, tau=TAU, c_max=2.0, c_min=0.5, lam=1.0):
    """MADPO's w(Δ) (arXiv 2510.05342) on one float, with stdlib math; the paper's defaults."""
    if delta <= -tau:
        return 1.0
    c = c_min + (c_max - c_min) / (
        1 + (c_max - 1) / (1 - c_min) * math.exp(lam * (abs(delta) - tau))
    )
    return sig(c * delta) / sig(delta)


def check_summary(summary, values):
    assert summary["n"] == len(values)
    assert summary["mean"] == pytest.approx(statistics.fmean(values), rel=1e-9, abs=1e-12)
    assert summary["std"] == pytest.approx(statistics.pstdev(values), rel=1e-9, abs=1e-12)
    for key, q in zip(QUANTILE_KEYS, QUANTILES, strict=True):
        assert summary[key] == pytest.approx(hand_quantile(values, q), rel=1e-9, abs=1e-12), key


def armorm_like(n=120, seed=1):
    """Raw ArmoRM-scale scores: 0.05–0.2, margins ≈ 0.01."""
    rng = np.random.default_rng(seed)
    rejected = rng.uniform(0.05, 0.18, n)
    chosen = rejected + np.abs(rng.normal(0.01, 0.005, n))
    return list(chosen), list(rejected)
