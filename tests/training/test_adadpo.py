"""Tests for AdaDPO (training/losses.py `adadpo`, training/loss_parts.py `adadpo_coefficients`):
the coefficients, their stop-gradient, the per-sequence gradient balance, and the cases where it
reduces to DPO or drops the reference."""

from __future__ import annotations

import math

import pytest
import torch
from loss_cases import PAIRS, _t, grad_wrt_chosen, make_batch, sig, with_policy

from prefsmith.training.loss_parts import adadpo_coefficients
from prefsmith.training.losses import adadpo, dpo, needs_reference


def test_adadpo_coefficients_sum_to_two_and_clip():
    d = _t([-50.0, -3.0, -0.1, 0.0, 0.7, 2.0, 50.0])
    for clip in (None, 10.0, 1.5):
        c_w, c_l = adadpo_coefficients(d, clip=clip)
        torch.testing.assert_close(c_w + c_l, torch.full_like(d, 2.0), atol=1e-15, rtol=0)
    c_w, _ = adadpo_coefficients(_t([50.0, -50.0]), clip=10.0)
    assert c_w.tolist() == pytest.approx([2 * 10 / 11, 2 * 1 / 11])  # 2σ(±log 10)
    with pytest.raises(ValueError, match="clip"):
        adadpo_coefficients(d, clip=1.0)


def test_adadpo_coefficients_carry_no_gradient():
    d = _t([0.3, -1.2]).requires_grad_(True)
    c_w, c_l = adadpo_coefficients(d, clip=10.0)
    assert not c_w.requires_grad and not c_l.requires_grad
    # In the loss: ∂ℓ/∂lw = −β·c_w·σ(−z), ∂ℓ/∂ll = β·c_l·σ(−z), with c held constant.
    batch = make_batch()
    lw = batch.policy_chosen_logps.clone().requires_grad_(True)
    ll = batch.policy_rejected_logps.clone().requires_grad_(True)
    adadpo(with_policy(batch, lw, ll))[0].sum().backward()
    grads_w, grads_l = [], []
    for p_lw, p_ll, p_rw, p_rl, n_w, n_l, _, _ in PAIRS:
        d_pair = max(-math.log(10), min(math.log(10), p_lw / n_w - p_ll / n_l))
        cw, cl = 2 * sig(d_pair), 2 * sig(-d_pair)
        z = 0.1 * (cw * (p_lw - p_rw) - cl * (p_ll - p_rl))
        grads_w.append(-0.1 * cw * sig(-z))
        grads_l.append(0.1 * cl * sig(-z))
    assert lw.grad.tolist() == pytest.approx(grads_w, rel=1e-12)
    assert ll.grad.tolist() == pytest.approx(grads_l, rel=1e-12)


def test_adadpo_balances_probability_gradients_per_sequence():
    """|∂ℓ/∂π_w| = |∂ℓ/∂lw| / π_w with π = exp(l); compared in logs:
    log|∂ℓ/∂lw| − lw = log|∂ℓ/∂ll| − ll."""
    batch = make_batch()
    lw = batch.policy_chosen_logps.clone().requires_grad_(True)
    ll = batch.policy_rejected_logps.clone().requires_grad_(True)
    adadpo(with_policy(batch, lw, ll), per_token=False)[0].sum().backward()
    left = lw.grad.abs().log() - lw.detach()
    right = ll.grad.abs().log() - ll.detach()
    torch.testing.assert_close(left, right, atol=1e-12, rtol=0)
    # Plain DPO is unbalanced: there |∂ℓ/∂lw| = |∂ℓ/∂ll|.
    dpo_lw = grad_wrt_chosen(dpo, batch)
    assert not torch.allclose(lw.grad, dpo_lw)


def test_adadpo_equals_dpo_when_per_token_means_are_equal():
    """aw = al: −10/5 = −8/4 = −2 and −6/3 = −12/6 = −2, so d = 0 and c_w = c_l = 1."""
    pairs = [
        (-10.0, -8.0, -9.0, -9.5, 5.0, 4.0, 0.0, 0.0),
        (-6.0, -12.0, -7.0, -11.0, 3.0, 6.0, 0.0, 0.0),
    ]
    batch = make_batch(pairs)
    torch.testing.assert_close(adadpo(batch)[0], dpo(batch)[0], atol=1e-15, rtol=0)
    torch.testing.assert_close(grad_wrt_chosen(adadpo, batch), grad_wrt_chosen(dpo, batch))
    assert adadpo(batch)[1]["adadpo/c_w_mean"].item() == pytest.approx(1.0)


def test_adadpo_without_reference():
    no_ref = make_batch(ref=False)
    zero_ref = make_batch([(p[0], p[1], 0.0, 0.0, *p[4:]) for p in PAIRS])
    loss, metrics = adadpo(no_ref, use_ref=False)
    torch.testing.assert_close(loss, adadpo(zero_ref)[0], atol=1e-15, rtol=0)
    assert metrics["rewards/chosen"].item() == pytest.approx(0.1 * sum(p[0] for p in PAIRS) / 3)
    assert not needs_reference("adadpo", use_ref=False)
    with pytest.raises(ValueError, match="ref_chosen_logps"):
        adadpo(no_ref)
