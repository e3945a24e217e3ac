"""The per-pair loss weights `prefsmith inspect` previews, in numpy (no torch where inspect runs).

They restate the trainer's torch formulas (`prefsmith.training.losses`, shared/spec/losses.md) on
normalized score margins Δ = S_w − S_l, and take their hyperparameters from the same params models
the train config is validated with (`prefsmith.schemas.losses`); a test holds the two
implementations equal on the same margins.

| weight  | formula                                                                       |
|---------|-------------------------------------------------------------------------------|
| w_qual  | σ(η·Δ)                                     Uni-DPO quality weight (2506.10054) |
| MADPO w | σ(c(|Δ|)·Δ)/σ(Δ) for Δ > −τ else 1, c(|Δ|) = c_min + (c_max − c_min) /       |
|         | (1 + ((c_max − 1)/(1 − c_min))·exp(λ(|Δ| − τ)))              (arXiv 2510.05342) |
"""

from __future__ import annotations

import numpy as np

from prefsmith.schemas.losses import MADPOParams, UniDPOParams


def sigmoid(x: np.ndarray) -> np.ndarray:
    """σ(x) without overflow warnings for large |x|."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))  # (P,) in (0, 1]
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def w_qual(margin_norm: np.ndarray, *, eta: float) -> np.ndarray:
    """Uni-DPO's quality weight σ(η·(S_w − S_l)) on normalized margins; shape (P,)."""
    return sigmoid(eta * np.asarray(margin_norm, dtype=np.float64))


def madpo_weight(
    margin_norm: np.ndarray, *, c_max: float, c_min: float, lam: float, tau: float
) -> np.ndarray:
    """MADPO's per-pair weight w(Δ) (spec/losses.md `madpo`): 1 at Δ=0 and |Δ|=τ, 1 for Δ ≤ −τ."""
    delta = np.asarray(margin_norm, dtype=np.float64)  # (P,)
    ratio = (c_max - 1.0) / (1.0 - c_min)
    exponent = np.minimum(lam * (np.abs(delta) - tau), 700.0)  # (P,) avoid exp overflow
    c = c_min + (c_max - c_min) / (1.0 + ratio * np.exp(exponent))  # (P,)
    return np.where(delta > -tau, sigmoid(c * delta) / sigmoid(delta), 1.0)


def preview_weights(
    margin_norm: np.ndarray, *, unidpo: UniDPOParams, madpo: MADPOParams
) -> dict[str, np.ndarray]:
    """`w_qual` and `madpo_weight` of each pair (shape (P,)) at the given loss parameters."""
    return {
        "w_qual": w_qual(margin_norm, eta=unidpo.eta),
        "madpo_weight": madpo_weight(
            margin_norm, c_max=madpo.c_max, c_min=madpo.c_min, lam=madpo.lam, tau=madpo.tau
        ),
    }
