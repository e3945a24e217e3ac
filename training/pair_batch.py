"""The input of every preference loss: per-pair log-probabilities, token counts and scores.

A loss in :mod:`prefsmith.training.losses` takes a :class:`PairBatch` and returns ``LossOutput``:
``(per_pair_loss (B,), metrics)``. The notation (``lw, ll, rw, rl, Lw, Ll, S_w, S_l``) is
documented in :mod:`prefsmith.training.losses`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from torch import Tensor

Metrics = dict[str, Tensor]
LossOutput = tuple[Tensor, Metrics]


@dataclass(frozen=True, kw_only=True)
class PairBatch:
    """Per-pair inputs of every loss; each field is a float tensor of shape ``(B,)``.

    Args:
        policy_chosen_logps: ``lw``, summed log-prob of the chosen completion under the policy.
        policy_rejected_logps: ``ll``, the same for the rejected completion.
        chosen_tokens: ``Lw``, completion label tokens of the chosen response (EOS in, prompt out).
        rejected_tokens: ``Ll``, the same for the rejected response.
        ref_chosen_logps: ``rw`` under the frozen reference; ``None`` for reference-free losses.
        ref_rejected_logps: ``rl`` under the frozen reference; ``None`` for reference-free losses.
        score_chosen: ``S_w``, scorer score after normalization; ``None`` if no loss uses it.
        score_rejected: ``S_l``, the same for the rejected response.
        weight: the pair's share of the batch mean (the pairs table's `weight` column), read by
            :func:`prefsmith.training.losses.reduce_loss` only, never by a loss; ``None``: all 1.
    """

    policy_chosen_logps: Tensor
    policy_rejected_logps: Tensor
    chosen_tokens: Tensor
    rejected_tokens: Tensor
    ref_chosen_logps: Tensor | None = None
    ref_rejected_logps: Tensor | None = None
    score_chosen: Tensor | None = None
    score_rejected: Tensor | None = None
    weight: Tensor | None = None

    def __post_init__(self) -> None:
        shape = tuple(self.policy_chosen_logps.shape)
        bad = [
            f"{f.name} {tuple(value.shape)}"
            for f in fields(self)
            if (value := getattr(self, f.name)) is not None and tuple(value.shape) != shape
        ]
        if bad or len(shape) != 1:
            raise ValueError(
                f"PairBatch fields must all be 1-D of one shape (B,); policy_chosen_logps has "
                f"{shape}{', these differ: ' + ', '.join(bad) if bad else ''}"
            )
