"""The weights `prefsmith inspect` previews (inspection/weights.py, numpy) against hand-worked
values and against the trainer's own torch parts (training/loss_parts.py) on the same margins."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from inspect_cases import TAU, hand_madpo, make_pairs, sig

from prefsmith.inspection import stats as st
from prefsmith.inspection.weights import madpo_weight, preview_weights, w_qual
from prefsmith.schemas.losses import MADPOParams, UniDPOParams
from prefsmith.training import loss_parts
from prefsmith.training.losses import unidpo
from prefsmith.training.pair_batch import PairBatch

# Margins where the formulas change branch or could overflow, and a dense grid between.
SPECIAL = [0.0, TAU, -TAU, -TAU - 1e-9, -TAU + 1e-9, 2.5, -2.5, 1e-7, -1e-7, 60.0, -60.0, 800.0]
MARGINS = np.concatenate([np.array(SPECIAL), np.linspace(-12.0, 12.0, 481)])  # (P,)
FLOAT_SAFE = SPECIAL[:-1]  # the stdlib oracle's exp overflows at Δ = 800
MADPO_CASES = [
    MADPOParams(),
    MADPOParams(c_max=3.0, c_min=0.2, lam=0.4, tau=2.5),
    MADPOParams(c_max=1.05, c_min=0.95, lam=5.0, tau=0.5),
]


def test_madpo_weight_hand_values():
    """Δ = 1, defaults: exp(1 − ln 999) = 0.0027210, c = 0.5 + 1.5/(1 + 2·0.0027210) = 1.9918812,
    w = σ(1.9918812)/σ(1) = 0.8799420/0.7310586 = 1.2036546. Δ = −1: w = σ(−1.9918812)/σ(−1)
    = 0.1200580/0.2689414 = 0.4464094. w = 1 at Δ = 0, at |Δ| = τ and for Δ ≤ −τ."""
    tau = math.log(999)
    margins = np.array([1.0, -1.0, 0.0, tau, -tau, -tau - 1.0, 10.0, 800.0])
    w = madpo_weight(margins, c_max=2.0, c_min=0.5, lam=1.0, tau=tau)
    assert w[:2] == pytest.approx([1.2036546, 0.4464094], abs=1e-6)
    assert w[2:6] == pytest.approx([1.0, 1.0, 1.0, 1.0], abs=1e-12)
    assert w[6] < 1.0 and np.isfinite(w).all()  # damped beyond τ; no overflow at huge margins
    assert w_qual(np.array([0.01, 0.0]), eta=0.7) == pytest.approx([0.5017500, 0.5], abs=1e-7)


@pytest.mark.parametrize("params", MADPO_CASES, ids=["defaults", "wide", "narrow"])
def test_madpo_preview_equals_the_torch_loss_part(params):
    """inspection's numpy w(Δ) and training's torch w(Δ), same margins, same parameters."""
    previewed = madpo_weight(
        MARGINS, c_max=params.c_max, c_min=params.c_min, lam=params.lam, tau=params.tau
    )
    trained = loss_parts.madpo_weight(
        torch.tensor(MARGINS, dtype=torch.float64),
        c_max=params.c_max,
        c_min=params.c_min,
        lam=params.lam,
        tau=params.tau,
    )
    np.testing.assert_allclose(previewed, trained.numpy(), rtol=0, atol=1e-6)
    oracle = [hand_madpo(m, params.tau, params.c_max, params.c_min, params.lam) for m in FLOAT_SAFE]
    np.testing.assert_allclose(previewed[: len(FLOAT_SAFE)], oracle, rtol=0, atol=1e-9)


@pytest.mark.parametrize("eta", [UniDPOParams().eta, 0.05, 3.0])
def test_w_qual_preview_equals_the_torch_loss_part_and_the_loss(eta):
    """w_qual = σ(η(S_w − S_l)) three ways: inspection's numpy, the torch part, and read off
    unidpo itself: with policy = reference (Δ = 0), γ = 0 (w_perf = 1) and λ = 0 (no c-NLL),
    ℓ = −w_qual·log σ(0) = w_qual·ln 2."""
    previewed = w_qual(MARGINS, eta=eta)  # (P,)
    s_w = torch.tensor(MARGINS, dtype=torch.float64) + 1.5  # (P,) S_w − S_l = margin
    s_l = torch.full_like(s_w, 1.5)
    trained = loss_parts.unidpo_w_qual(s_w, s_l, eta=eta)
    np.testing.assert_allclose(previewed, trained.numpy(), rtol=0, atol=1e-6)
    logps = torch.full_like(s_w, -10.0)
    tokens = torch.full_like(s_w, 5.0)
    batch = PairBatch(
        policy_chosen_logps=logps,
        policy_rejected_logps=logps,
        chosen_tokens=tokens,
        rejected_tokens=tokens,
        ref_chosen_logps=logps,
        ref_rejected_logps=logps,
        score_chosen=s_w,
        score_rejected=s_l,
    )
    loss, _ = unidpo(batch, eta=eta, gamma=0.0, lam=0.0)
    np.testing.assert_allclose(previewed, (loss / math.log(2.0)).numpy(), rtol=0, atol=1e-6)
    assert previewed[: len(SPECIAL)].tolist() == pytest.approx([sig(eta * m) for m in SPECIAL])


def test_statistics_preview_the_given_parameters():
    """pair_statistics' weights and settings follow the params models it is given: the defaults
    when none, else every MADPO field (c_max, c_min, λ, τ) and Uni-DPO's η, τ_good."""
    chosen, rejected = [0.5, 1.0, 3.0, 2.0, 9.0], [0.0, 0.5, 0.0, 2.5, 1.0]
    margins = [c - r for c, r in zip(chosen, rejected, strict=True)]
    pairs = make_pairs(chosen, rejected)
    unidpo_params = UniDPOParams(eta=2.0, tau_good=2.5)
    madpo_params = MADPOParams(c_max=3.0, c_min=0.2, lam=0.4, tau=2.5)
    stats = st.pair_statistics(pairs, unidpo=unidpo_params, madpo=madpo_params)
    weights = [hand_madpo(m, 2.5, 3.0, 0.2, 0.4) for m in margins]
    assert stats["madpo"]["mean"] == pytest.approx(sum(weights) / 5, rel=1e-12)
    assert stats["w_qual"]["mean"] == pytest.approx(sum(sig(2.0 * m) for m in margins) / 5)
    assert stats["c_nll"]["active_fraction"] == pytest.approx(2 / 5)  # S_w ≥ 2.5: 3.0 and 9.0
    assert {k: stats["settings"][k] for k in ("eta", "tau_good", "madpo_tau", "madpo_lam")} == {
        "eta": 2.0,
        "tau_good": 2.5,
        "madpo_tau": 2.5,
        "madpo_lam": 0.4,
    }
    default = st.pair_statistics(pairs)
    assert default["madpo"]["mean"] == pytest.approx(sum(hand_madpo(m) for m in margins) / 5)
    assert default["settings"]["eta"] == UniDPOParams().eta == 0.7
    arrays = preview_weights(np.array(margins), unidpo=unidpo_params, madpo=madpo_params)
    assert arrays["madpo_weight"].tolist() == pytest.approx(weights, rel=1e-12)
