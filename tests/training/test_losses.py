"""Tests for training/losses.py: hand-worked values, finite-difference gradients, properties.

The oracles below restate each formula with Python's ``math`` on plain floats, independently
of the implementation; all tensors are float64.
"""

from __future__ import annotations

import math

import pytest
import torch
from loss_cases import F64, PAIRS, TAU, _t, grad_wrt_chosen, make_batch, sig, with_policy  # noqa: F401

from prefsmith.training.losses import (
    LOSSES,
    adadpo,
    dpo,
    ipo,
    madpo,
    simpo,
    unidpo,
)

# ---------------------------------------------------------------- oracles (plain floats)


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def dpo_oracle(p, beta=0.1, eps=0.0):
    lw, ll, rw, rl = p[:4]
    z = beta * ((lw - rw) - (ll - rl))
    return -(1 - eps) * logsig(z) - eps * logsig(-z)


def ipo_oracle(p, beta=0.1, normalize=True):
    lw, ll, rw, rl, n_w, n_l = p[:6]
    h = (lw - rw) / n_w - (ll - rl) / n_l if normalize else (lw - rw) - (ll - rl)
    return (h - 1 / (2 * beta)) ** 2


def simpo_oracle(p, beta=2.0, ratio=0.5):
    lw, ll, _, _, n_w, n_l = p[:6]
    return -logsig(beta * lw / n_w - beta * ll / n_l - beta * ratio)


def unidpo_oracle(p, beta=2.0, eta=0.7, tau_ref=1.0, gamma=3.0, lam=0.001, tau_good=3.2):
    lw, ll, rw, rl, n_w, n_l, s_w, s_l = p
    aw, al, arw, arl = lw / n_w, ll / n_l, rw / n_w, rl / n_l
    delta = beta * ((aw - arw) - (al - arl))
    w_qual = sig(eta * (s_w - s_l))
    w_perf = (1 - sig(beta * (aw - al) - tau_ref)) ** gamma
    active = 1.0 if (arw > aw and s_w >= tau_good) else 0.0
    return -w_qual * w_perf * logsig(delta) - lam * active * aw


def madpo_weight_oracle(delta, c_max=2.0, c_min=0.5, lam=1.0, tau=TAU):
    if delta <= -tau:
        return 1.0
    odds = (c_max - 1) / (1 - c_min)
    c = c_min + (c_max - c_min) / (1 + odds * math.exp(lam * (abs(delta) - tau)))
    return sig(c * delta) / sig(delta)


def madpo_oracle(p, beta=0.1):
    return madpo_weight_oracle(p[6] - p[7]) * dpo_oracle(p, beta)


def adadpo_oracle(p, beta=0.1, per_token=True, clip=10.0, use_ref=True):
    lw, ll, rw, rl, n_w, n_l = p[:6]
    bound = math.log(clip)
    d = max(-bound, min(bound, lw / n_w - ll / n_l)) if per_token else lw - ll
    c_w, c_l = 2 * sig(d), 2 * sig(-d)
    if not use_ref:
        rw = rl = 0.0
    return -logsig(beta * (c_w * (lw - rw) - c_l * (ll - rl)))


# ---------------------------------------------------------------- values worked by hand


def test_dpo_spec_check_value_and_gradient():
    """z = 0.1·[(−10 + 11) − (−12 + 11)] = 0.2; ℓ = log(1 + e^−0.2) = 0.598139;
    ∂ℓ/∂lw = −β·σ(−z) = −0.1 · 0.450166 = −0.045017."""
    batch = make_batch([(-10.0, -12.0, -11.0, -11.0, 1.0, 1.0, 0.0, 0.0)], grad=True)
    loss, _ = dpo(batch, beta=0.1)
    loss.sum().backward()
    assert loss.item() == pytest.approx(0.598139, abs=1e-6)
    assert batch.policy_chosen_logps.grad.item() == pytest.approx(-0.045017, abs=1e-6)


def test_simpo_spec_check_value():
    """aw = −20/10 = −2, al = −30/10 = −3, γ = 2·0.25 = 0.5; z = 2·(−2) − 2·(−3) − 0.5 = 1.5;
    ℓ = log(1 + e^−1.5) = 0.201413."""
    batch = make_batch([(-20.0, -30.0, 0.0, 0.0, 10.0, 10.0, 0.0, 0.0)], ref=False)
    loss, _ = simpo(batch, beta=2.0, gamma_beta_ratio=0.25)
    assert loss.item() == pytest.approx(0.201413, abs=1e-6)


ORACLE_CASES = [
    ("dpo", {}, dpo_oracle),
    ("dpo", {"beta": 0.5, "label_smoothing": 0.2}, lambda p: dpo_oracle(p, 0.5, 0.2)),
    ("ipo", {"beta": 0.1}, lambda p: ipo_oracle(p, 0.1, True)),
    ("ipo", {"beta": 0.5, "length_normalize": False}, lambda p: ipo_oracle(p, 0.5, False)),
    ("simpo", {}, simpo_oracle),
    ("unidpo", {}, unidpo_oracle),
    ("unidpo", {"lam": 0.1, "gamma": 1.0}, lambda p: unidpo_oracle(p, lam=0.1, gamma=1.0)),
    ("madpo", {}, madpo_oracle),
    (
        "madpo",
        {"lam": 0.5, "c_max": 3.0, "tau": 2.0},
        lambda p: madpo_weight_oracle(p[6] - p[7], c_max=3.0, lam=0.5, tau=2.0) * dpo_oracle(p),
    ),
    ("adadpo", {}, adadpo_oracle),
    ("adadpo", {"per_token": False}, lambda p: adadpo_oracle(p, per_token=False)),
    ("adadpo", {"clip": 1.5}, lambda p: adadpo_oracle(p, clip=1.5)),
    ("adadpo", {"use_ref": False}, lambda p: adadpo_oracle(p, use_ref=False)),
]


@pytest.mark.parametrize(("name", "hparams", "oracle"), ORACLE_CASES)
def test_loss_matches_hand_formula(name, hparams, oracle):
    loss, _ = LOSSES[name](make_batch(), **hparams)
    assert loss.dtype == F64
    assert loss.shape == (len(PAIRS),)
    expected = [oracle(p) for p in PAIRS]
    assert loss.tolist() == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_dpo_label_smoothing_zero_is_plain_dpo_and_half_is_symmetric():
    batch = make_batch()
    plain, _ = dpo(batch)
    assert torch.equal(dpo(batch, label_smoothing=0.0)[0], plain)
    # ε = 1/2: ℓ = −½[log σ(z) + log σ(−z)], even in z, so flipping chosen/rejected keeps it.
    swapped = make_batch([(p[1], p[0], p[3], p[2], *p[4:]) for p in PAIRS])
    torch.testing.assert_close(
        dpo(batch, label_smoothing=0.5)[0], dpo(swapped, label_smoothing=0.5)[0]
    )


def test_ipo_length_normalize_modes_differ_only_through_token_counts():
    """With Lw = Ll = 1 both forms are the same number; with real counts they differ."""
    ones = make_batch([(*p[:4], 1.0, 1.0, *p[6:]) for p in PAIRS])
    torch.testing.assert_close(ipo(ones)[0], ipo(ones, length_normalize=False)[0])
    batch = make_batch()
    assert not torch.allclose(ipo(batch)[0], ipo(batch, length_normalize=False)[0])


def test_reward_metrics_of_dpo():
    """β(lw − rw) = 0.1·(1, −2, −2); β(ll − rl) = 0.1·(−1, −3, 1); chosen ahead in A and B."""
    _, metrics = dpo(make_batch(), beta=0.1)
    assert metrics["rewards/chosen"].item() == pytest.approx(0.1 * (1 - 2 - 2) / 3)
    assert metrics["rewards/rejected"].item() == pytest.approx(0.1 * (-1 - 3 + 1) / 3)
    assert metrics["rewards/margins"].item() == pytest.approx(0.1 * (2 + 1 - 3) / 3)
    assert metrics["rewards/accuracies"].item() == pytest.approx(2 / 3)


def test_reward_accuracy_counts_only_strict_wins():
    """Pair 1: β(lw − rw) = 0.1 = β(ll − rl), a tie, so not a win; pair 2 wins: 1/2."""
    pairs = [
        (-10.0, -12.0, -11.0, -13.0, 1.0, 1.0, 0.0, 0.0),
        (-10.0, -12.0, -11.0, -11.0, 1.0, 1.0, 0.0, 0.0),
    ]
    _, metrics = dpo(make_batch(pairs))
    assert metrics["rewards/accuracies"].item() == 0.5


def test_simpo_rewards_are_per_token():
    _, metrics = simpo(make_batch(), beta=2.0)
    expected = sum(2.0 * p[0] / p[4] for p in PAIRS) / 3
    assert metrics["rewards/chosen"].item() == pytest.approx(expected)


# ---------------------------------------------------------------- gradients


GRAD_CASES = [
    ("dpo", {}),
    ("dpo", {"label_smoothing": 0.1}),
    ("ipo", {}),
    ("ipo", {"length_normalize": False}),
    ("simpo", {}),
    ("unidpo", {"lam": 0.1}),
    ("madpo", {}),
    # AdaDPO's coefficients are stop-gradient, so a finite difference that moves them sees a
    # term autograd (rightly) leaves out; with clip = 1.5 every pair sits on the clip bound
    # (|aw − al| ∈ {1, 1, 0.5} > log 1.5), so the coefficients are locally constant.
    ("adadpo", {"clip": 1.5}),
]


@pytest.mark.parametrize(("name", "hparams"), GRAD_CASES)
def test_gradient_matches_central_finite_differences(name, hparams):
    batch = make_batch()

    def per_pair(lw: torch.Tensor, ll: torch.Tensor) -> torch.Tensor:
        return LOSSES[name](with_policy(batch, lw, ll), **hparams)[0]

    lw = batch.policy_chosen_logps.clone().requires_grad_(True)
    ll = batch.policy_rejected_logps.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(per_pair, (lw, ll), eps=1e-6, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("per_token", [True, False])
def test_adadpo_gradient_along_directions_that_keep_the_coefficients(per_token):
    """Moving lw by ε·Lw and ll by ε·Ll keeps aw − al (per_token) fixed; moving both by ε keeps
    lw − ll fixed. Along those directions a central difference sees no coefficient change."""
    batch = make_batch()
    direction_w = batch.chosen_tokens if per_token else torch.ones(3, dtype=F64)
    direction_l = batch.rejected_tokens if per_token else torch.ones(3, dtype=F64)
    lw = batch.policy_chosen_logps.clone().requires_grad_(True)
    ll = batch.policy_rejected_logps.clone().requires_grad_(True)
    adadpo(with_policy(batch, lw, ll), per_token=per_token)[0].sum().backward()
    analytic = lw.grad * direction_w + ll.grad * direction_l  # (B,)
    eps = 1e-6

    def at(step: float) -> torch.Tensor:
        moved = with_policy(
            batch,
            batch.policy_chosen_logps + step * direction_w,
            batch.policy_rejected_logps + step * direction_l,
        )
        return adadpo(moved, per_token=per_token)[0]

    numeric = (at(eps) - at(-eps)) / (2 * eps)  # (B,)
    torch.testing.assert_close(analytic, numeric, atol=1e-8, rtol=1e-6)


# ---------------------------------------------------------------- Uni-DPO


def test_unidpo_w_perf_carries_gradient_unless_detached():
    batch = make_batch()
    flowing = grad_wrt_chosen(unidpo, batch, lam=0.1)
    detached = grad_wrt_chosen(unidpo, batch, lam=0.1, detach_w_perf=True)
    assert not torch.allclose(flowing, detached)
    # Detached: ∂ℓ/∂lw = −w_qual·w_perf·σ(−Δ)·β/Lw − λ·𝟙/Lw, w_perf held constant.
    expected = []
    for lw, ll, rw, rl, n_w, n_l, s_w, s_l in PAIRS:
        aw, al = lw / n_w, ll / n_l
        delta = 2.0 * ((aw - rw / n_w) - (al - rl / n_l))
        w_qual, w_perf = sig(0.7 * (s_w - s_l)), (1 - sig(2.0 * (aw - al) - 1.0)) ** 3
        active = 1.0 if (rw / n_w > aw and s_w >= 3.2) else 0.0
        expected.append(-w_qual * w_perf * sig(-delta) * 2.0 / n_w - 0.1 * active / n_w)
    assert detached.tolist() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize(
    ("rw", "s_w", "active"),
    [
        (-18.0, 3.5, True),  # arw = −1.8 > aw = −2 and S_w ≥ τ_good
        (-18.0, 3.2, True),  # S_w exactly τ_good still counts (≥)
        (-22.0, 3.5, False),  # the policy is ahead of the reference on the chosen response
        (-20.0, 3.5, False),  # a tie is not "strictly better"
        (-18.0, 3.0, False),  # the chosen response is not good enough
    ],
)
def test_unidpo_calibrated_nll_switch(rw, s_w, active):
    """lw = −20 over Lw = 10 tokens, so aw = −2 and the c-NLL term is −λ·aw = 2λ when on."""
    batch = make_batch([(-20.0, -30.0, rw, -30.0, 10.0, 10.0, s_w, 0.0)])
    with_nll, metrics = unidpo(batch, lam=0.1)
    without_nll, _ = unidpo(batch, lam=0.0)
    assert (with_nll - without_nll).item() == pytest.approx(0.2 if active else 0.0, abs=1e-12)
    assert metrics["unidpo/cnll_active_frac"].item() == (1.0 if active else 0.0)


def test_unidpo_raw_armorm_scale_makes_w_qual_about_half_and_never_fires_cnll():
    """Raw ArmoRM-like scores (0.05–0.2): σ(0.7·0.03) ≈ 0.505, and S_w < τ_good = 3.2."""
    raw = [(0.12, 0.11), (0.2, 0.17), (0.08, 0.06)]
    pairs = [(*p[:6], s_w, s_l) for p, (s_w, s_l) in zip(PAIRS, raw, strict=True)]
    _, metrics = unidpo(make_batch(pairs))
    assert metrics["unidpo/w_qual_mean"].item() == pytest.approx(0.5, abs=0.01)
    assert metrics["unidpo/cnll_active_frac"].item() == 0.0


def test_unidpo_weight_metrics():
    _, metrics = unidpo(make_batch())
    w_qual = [sig(0.7 * (p[6] - p[7])) for p in PAIRS]
    w_perf = [(1 - sig(2.0 * (p[0] / p[4] - p[1] / p[5]) - 1.0)) ** 3 for p in PAIRS]
    assert metrics["unidpo/w_qual_mean"].item() == pytest.approx(sum(w_qual) / 3)
    assert metrics["unidpo/w_perf_mean"].item() == pytest.approx(sum(w_perf) / 3)
    assert metrics["unidpo/cnll_active_frac"].item() == pytest.approx(1 / 3)


# ---------------------------------------------------------------- MADPO


def _madpo_weights(margins: list[float], **hparams) -> torch.Tensor:
    """Per-pair MADPO weight, read off as madpo / dpo on pairs that differ only in Δ."""
    pairs = [(-10.0, -12.0, -11.0, -11.0, 5.0, 4.0, m, 0.0) for m in margins]
    batch = make_batch(pairs)
    return madpo(batch, **hparams)[0] / dpo(batch, beta=hparams.get("beta", 0.1))[0]


def test_madpo_weight_is_one_at_zero_and_at_plus_minus_tau():
    weights = _madpo_weights([0.0, TAU, -TAU])
    torch.testing.assert_close(weights, torch.ones(3, dtype=F64), atol=1e-12, rtol=0)


def test_madpo_weight_regions():
    amplified = _madpo_weights([0.5, 1.0, 3.0, 6.0])  # 0 < Δ < τ
    damped_easy = _madpo_weights([7.5, 10.0, 30.0])  # Δ > τ
    damped_inconsistent = _madpo_weights([-0.5, -3.0, -6.5])  # −τ < Δ < 0
    untouched = _madpo_weights([-7.0, -20.0, -TAU - 1e-9])  # Δ ≤ −τ
    assert (amplified > 1).all()
    assert (damped_easy < 1).all()
    assert (damped_inconsistent < 1).all()
    torch.testing.assert_close(untouched, torch.ones(3, dtype=F64), atol=1e-12, rtol=0)


def test_madpo_weight_matches_formula_and_metrics():
    margins = [3.0, 0.5, -1.0, 9.0, -8.0]
    weights = _madpo_weights(margins)
    expected = [madpo_weight_oracle(m) for m in margins]
    assert weights.tolist() == pytest.approx(expected, rel=1e-10)
    pairs = [(-10.0, -12.0, -11.0, -11.0, 5.0, 4.0, m, 0.0) for m in margins]
    _, metrics = madpo(make_batch(pairs))
    assert metrics["madpo/weight_mean"].item() == pytest.approx(sum(expected) / 5)
    assert metrics["madpo/weight_min"].item() == pytest.approx(min(expected))
    assert metrics["madpo/weight_max"].item() == pytest.approx(max(expected))
    assert metrics["madpo/amplified_frac"].item() == pytest.approx(2 / 5)


def test_madpo_rejects_c_bounds_that_do_not_bracket_one():
    with pytest.raises(ValueError, match="c_min < 1 < c_max"):
        madpo(make_batch(), c_min=1.0)
