"""Parts the losses in :mod:`prefsmith.training.losses` are built from: reading a ``PairBatch``
(with a clear error for a missing field), the logistic loss, the reward metrics, Uni-DPO's
quality weight, MADPO's margin weight and AdaDPO's coefficients. Shapes are ``(B,)`` throughout;
the formulas and the metric definitions are documented once, in :mod:`prefsmith.training.losses`.
`prefsmith inspect` previews the two weights in numpy (:mod:`prefsmith.inspection.weights`); a
test holds both implementations equal.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from prefsmith.training.pair_batch import PairBatch

_OPTIONAL = {  # kind -> (optional PairBatch fields, how to get them)
    "reference": (
        ("ref_chosen_logps", "ref_rejected_logps"),
        "run `prefsmith reference` on the pairs table first",
    ),
    "scores": (
        ("score_chosen", "score_rejected"),
        "score the responses (`prefsmith score`) and build pairs that carry both scores",
    ),
}


def required(batch: PairBatch, *, loss: str, kind: str) -> list[Tensor]:
    """The optional fields of ``kind`` ("reference" or "scores") that ``loss`` reads.

    Raises:
        ValueError: naming the loss, every missing field and how to fill it.
    """
    names, fix = _OPTIONAL[kind]
    missing = [name for name in names if getattr(batch, name) is None]
    if missing:
        joined = " and ".join(f"PairBatch.{name}" for name in missing)
        raise ValueError(f"loss {loss!r} needs {joined}, which is None; {fix}")
    return [getattr(batch, name) for name in names]


def log_ratios(batch: PairBatch, *, loss: str) -> tuple[Tensor, Tensor]:
    """``(lw − rw, ll − rl)``, each ``(B,)``: summed policy-to-reference log-ratios."""
    ref_chosen, ref_rejected = required(batch, loss=loss, kind="reference")
    return batch.policy_chosen_logps - ref_chosen, batch.policy_rejected_logps - ref_rejected


def per_token_logps(batch: PairBatch) -> tuple[Tensor, Tensor]:
    """``(aw, al)``, each ``(B,)``: policy log-probs per completion token."""
    return (
        batch.policy_chosen_logps / batch.chosen_tokens,
        batch.policy_rejected_logps / batch.rejected_tokens,
    )


def sigmoid_loss(logits: Tensor, *, label_smoothing: float = 0.0) -> Tensor:
    """``−(1 − ε) log σ(z) − ε log σ(−z)`` per pair; ``(B,)`` in, ``(B,)`` out."""
    loss = -F.logsigmoid(logits)  # (B,)
    if label_smoothing != 0.0:
        loss = (1.0 - label_smoothing) * loss - label_smoothing * F.logsigmoid(-logits)  # (B,)
    return loss


def reward_metrics(chosen: Tensor, rejected: Tensor) -> dict[str, Tensor]:
    """The ``rewards/*`` metrics from per-pair implicit rewards ``(B,)``, detached and 0-d."""
    chosen, rejected = chosen.detach(), rejected.detach()  # (B,), (B,)
    return {
        "rewards/chosen": chosen.mean(),
        "rewards/rejected": rejected.mean(),
        "rewards/margins": (chosen - rejected).mean(),
        "rewards/accuracies": (chosen > rejected).to(chosen.dtype).mean(),
    }


def unidpo_w_qual(score_chosen: Tensor, score_rejected: Tensor, *, eta: float) -> Tensor:
    """Uni-DPO's quality weight ``w_qual = sg(σ(η·(S_w − S_l)))`` per pair; ``(B,)`` in and out."""
    return torch.sigmoid(eta * (score_chosen - score_rejected)).detach()  # (B,)


def madpo_weight(margin: Tensor, *, c_max: float, c_min: float, lam: float, tau: float) -> Tensor:
    """MADPO's per-pair weight from the reward-model margin ``Δ = S_w − S_l`` ``(B,)``.

        c(x) = c_min + (c_max − c_min) / (1 + ((c_max − 1)/(1 − c_min)) · exp(λ(x − τ)))
        w    = σ(c(|Δ|)·Δ) / σ(Δ)  if Δ > −τ,  else 1

    The ratio is taken as ``exp(log σ(cΔ) − log σ(Δ))`` so that large negative margins do not
    divide tiny numbers. The result carries no gradient.

    Raises:
        ValueError: unless ``c_min < 1 < c_max`` (c must cross 1 at ``|Δ| = τ``).
    """
    if not c_min < 1.0 < c_max:
        raise ValueError(
            f"madpo needs c_min < 1 < c_max, got c_min={c_min}, c_max={c_max}; "
            "the defaults are c_min=0.5, c_max=2.0"
        )
    margin = margin.detach()  # (B,)
    odds = (c_max - 1.0) / (1.0 - c_min)
    scale = c_min + (c_max - c_min) / (1.0 + odds * torch.exp(lam * (margin.abs() - tau)))  # (B,)
    weight = torch.exp(F.logsigmoid(scale * margin) - F.logsigmoid(margin))  # (B,)
    return torch.where(margin > -tau, weight, torch.ones_like(weight))  # (B,)


def adadpo_coefficients(log_ratio: Tensor, *, clip: float | None) -> tuple[Tensor, Tensor]:
    """AdaDPO's stop-gradient coefficients ``(c_w, c_l)``, each ``(B,)``, from ``d`` ``(B,)``.

        d = clip(log_ratio, −log C, log C)   (clip=None: unclipped)
        c_w = 2σ(d),  c_l = 2σ(−d)           (so c_w + c_l = 2 and c_w / c_l = e^d)

    ``log_ratio`` is ``aw − al`` (per-token) or ``lw − ll`` (per-sequence); the coefficients
    are detached, so they scale the gradient without being differentiated.

    Raises:
        ValueError: if ``clip`` is not greater than 1.
    """
    d = log_ratio.detach()  # (B,)
    if clip is not None:
        if not clip > 1.0:
            raise ValueError(f"adadpo clip must be > 1 (a probability ratio), got {clip}")
        d = d.clamp(-math.log(clip), math.log(clip))  # (B,)
    return 2.0 * torch.sigmoid(d), 2.0 * torch.sigmoid(-d)
