"""Hand-picked pairs and batch builders shared by the loss tests (float64 throughout)."""

from __future__ import annotations

import dataclasses
import math

import torch

from prefsmith.training.pair_batch import PairBatch

F64 = torch.float64
TAU = math.log(999.0)

# Three hand-picked pairs: (lw, ll, rw, rl, Lw, Ll, S_w, S_l).
#   A: policy ahead of the reference on both sides; MADPO margin 3 (amplified); c-NLL off.
#   B: reference ahead on the chosen side (arw = -1.8 > aw = -2) and S_w = 3.5 >= 3.2: c-NLL on.
#   C: the policy prefers the rejected response; MADPO margin -1 (damped).
PAIRS = [
    (-10.0, -12.0, -11.0, -11.0, 5.0, 4.0, 4.0, 1.0),
    (-20.0, -30.0, -18.0, -27.0, 10.0, 10.0, 3.5, 3.0),
    (-15.0, -9.0, -13.0, -10.0, 6.0, 3.0, 0.5, 1.5),
]


def _t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def make_batch(
    pairs=PAIRS, *, ref: bool = True, scores: bool = True, grad: bool = False, weights=None
):
    """A PairBatch of `pairs`; `weights` default to all 1 (every field set, as the trainer sets)."""
    lw, ll, rw, rl, n_w, n_l, s_w, s_l = (list(column) for column in zip(*pairs, strict=True))
    return PairBatch(
        policy_chosen_logps=_t(lw).requires_grad_(grad),
        policy_rejected_logps=_t(ll).requires_grad_(grad),
        chosen_tokens=_t(n_w),
        rejected_tokens=_t(n_l),
        ref_chosen_logps=_t(rw) if ref else None,
        ref_rejected_logps=_t(rl) if ref else None,
        score_chosen=_t(s_w) if scores else None,
        score_rejected=_t(s_l) if scores else None,
        weight=_t([1.0] * len(lw) if weights is None else weights),
    )


def with_policy(batch: PairBatch, lw: torch.Tensor, ll: torch.Tensor) -> PairBatch:
    return dataclasses.replace(batch, policy_chosen_logps=lw, policy_rejected_logps=ll)


def sig(x: float) -> float:
    """The logistic sigmoid on a plain float (for oracles written with `math`)."""
    return 1.0 / (1.0 + math.exp(-x))


def grad_wrt_chosen(loss_fn, batch: PairBatch, **hparams) -> torch.Tensor:
    """d(sum of per-pair losses)/d(policy_chosen_logps), shape (B,)."""
    lw = batch.policy_chosen_logps.detach().clone().requires_grad_(True)
    ll = batch.policy_rejected_logps.detach().clone()
    loss_fn(with_policy(batch, lw, ll), **hparams)[0].sum().backward()
    assert lw.grad is not None
    return lw.grad
