"""Tests for training/losses.py: the one reduction, combining terms, and what every loss promises
(registry, clear errors for missing inputs, untouched inputs, detached metrics)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from loss_cases import F64, PAIRS, TAU, _t, make_batch, with_policy  # noqa: F401

from prefsmith.training.losses import (
    LOSSES,
    adadpo,
    combined_loss,
    dpo,
    madpo,
    needs_reference,
    needs_scores,
    reduce_loss,
    simpo,
)
from prefsmith.training.pair_batch import PairBatch

# ---------------------------------------------------------------- reduction and combination


def test_reduce_loss_all_ones_equals_unweighted_mean():
    per_pair = dpo(make_batch())[0]
    ones = torch.ones(3, dtype=F64)
    torch.testing.assert_close(reduce_loss(per_pair, weights=ones), per_pair.mean())
    torch.testing.assert_close(reduce_loss(per_pair), per_pair.mean())
    # The weights' scale cancels, and float32 weights are cast to the loss dtype.
    sevens = torch.full((3,), 7.0)  # float32
    torch.testing.assert_close(reduce_loss(per_pair, weights=sevens), per_pair.mean())


def test_reduce_loss_weighted_mean():
    per_pair = _t([1.0, 2.0, 4.0])
    assert reduce_loss(per_pair, weights=_t([1.0, 0.0, 3.0])).item() == pytest.approx((1 + 12) / 4)
    with pytest.raises(ValueError, match="one weight per pair"):
        reduce_loss(per_pair, weights=_t([1.0, 2.0]))


def test_combined_single_dpo_term_with_weight_one_equals_dpo():
    batch = make_batch()
    loss, metrics = combined_loss(batch, terms=[("dpo", 1.0, {"beta": 0.1})])
    expected_loss, expected_metrics = dpo(batch, beta=0.1)
    torch.testing.assert_close(loss, expected_loss, atol=0, rtol=0)
    assert metrics.keys() == expected_metrics.keys()
    for key, value in expected_metrics.items():
        torch.testing.assert_close(metrics[key], value)


def test_combined_nll_term_adds_exactly_the_formula():
    """NLL = −nll_weight · lw / Lw: for pair A, −0.3 · (−10 / 5) = 0.6."""
    batch = make_batch()
    base, _ = dpo(batch)
    loss, metrics = combined_loss(batch, terms=[("dpo", 1.0, {})], nll_weight=0.3)
    added = [-0.3 * p[0] / p[4] for p in PAIRS]
    assert (loss - base).tolist() == pytest.approx(added, rel=1e-12)
    assert metrics["nll/chosen"].item() == pytest.approx(sum(-p[0] / p[4] for p in PAIRS) / 3)
    only_nll, _ = combined_loss(batch, terms=[], nll_weight=1.0)
    assert only_nll.tolist() == pytest.approx([-p[0] / p[4] for p in PAIRS])


def test_combined_several_terms_sum_and_prefix_metrics():
    batch = make_batch()
    loss, metrics = combined_loss(batch, terms=[("dpo", 0.5, {}), ("madpo", 2.0, {"beta": 0.2})])
    expected = 0.5 * dpo(batch)[0] + 2.0 * madpo(batch, beta=0.2)[0]
    torch.testing.assert_close(loss, expected)
    assert "dpo/rewards/chosen" in metrics and "madpo/madpo/weight_mean" in metrics
    assert "rewards/chosen" not in metrics


@pytest.mark.parametrize(
    ("terms", "match"),
    [
        ([("dpo", 1.0, {}), ("dpo", 1.0, {})], "repeat"),
        ([("dpx", 1.0, {})], "unknown loss"),
        ([], "at least one"),
    ],
)
def test_combined_rejects_bad_terms(terms, match):
    with pytest.raises(ValueError, match=match):
        combined_loss(make_batch(), terms=terms)


# ---------------------------------------------------------------- contract of every loss


def test_registry_names_and_requirements():
    assert set(LOSSES) == {"dpo", "ipo", "simpo", "unidpo", "madpo", "adadpo"}
    assert [needs_reference(name) for name in LOSSES] == [True, True, False, True, True, True]
    assert needs_reference("adadpo", use_ref=True) and not needs_reference("adadpo", use_ref=False)
    assert [needs_scores(name) for name in LOSSES] == [False, False, False, True, True, False]
    with pytest.raises(ValueError, match="registered losses"):
        needs_scores("orpo")


@pytest.mark.parametrize("name", ["dpo", "ipo", "unidpo", "madpo", "adadpo"])
def test_missing_reference_names_the_field_and_the_fix(name):
    with pytest.raises(ValueError, match=rf"'{name}'.*ref_chosen_logps.*prefsmith reference"):
        LOSSES[name](make_batch(ref=False))


@pytest.mark.parametrize("name", ["unidpo", "madpo"])
def test_missing_scores_names_the_field(name):
    with pytest.raises(ValueError, match=rf"'{name}'.*score_chosen.*score_rejected"):
        LOSSES[name](make_batch(scores=False))


def test_reference_free_and_score_free_losses_need_neither():
    bare = make_batch(ref=False, scores=False)
    assert simpo(bare)[0].shape == adadpo(bare, use_ref=False)[0].shape == (3,)
    assert dpo(make_batch(scores=False))[0].shape == (3,)


@pytest.mark.parametrize("name", ["unidpo", "madpo"])
def test_score_weights_carry_no_gradient(name):
    """Scores come from data: w_qual and the MADPO weight are constants to the optimizer."""
    batch = make_batch()
    s_w, s_l = (_t([p[i] for p in PAIRS]).requires_grad_(True) for i in (6, 7))
    scored = dataclasses.replace(batch, score_chosen=s_w, score_rejected=s_l)
    loss, metrics = LOSSES[name](scored)
    assert not loss.requires_grad
    assert all(not m.requires_grad for m in metrics.values())


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_inputs_untouched_metrics_detached_scalars(name):
    batch = make_batch(grad=True)
    before = {key: value.detach().clone() for key, value in vars(batch).items()}
    loss, metrics = LOSSES[name](batch)
    loss.sum().backward()
    for key, value in vars(batch).items():
        assert torch.equal(value.detach(), before[key]), key
    assert metrics and all(m.dim() == 0 and not m.requires_grad for m in metrics.values())
    assert all(m.dtype == F64 for m in metrics.values())
    rewards = {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"}
    assert rewards <= set(metrics)


def test_pair_batch_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="policy_rejected_logps"):
        PairBatch(
            policy_chosen_logps=_t([1.0, 2.0]),
            policy_rejected_logps=_t([1.0]),
            chosen_tokens=_t([1.0, 1.0]),
            rejected_tokens=_t([1.0, 1.0]),
        )
