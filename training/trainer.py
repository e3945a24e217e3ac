"""The weighted-DPO trainer: HF `Trainer` with our loss, everything else (optimizer, schedule,
DeepSpeed, checkpoints, resume, `report_to` logging) is the Trainer's own.

`compute_loss` is the whole algorithm: one forward over chosen and rejected, summed completion
log-probs (`prefsmith.training.logprobs`), a `PairBatch`, `prefsmith.training.losses.combined_loss`, the
mean over pairs weighted by the pairs' `weight` column (`reduce_loss`), a finite-loss guard, and the loss's metrics kept for logging. `log`
only folds the mean of those metrics since the last log into the Trainer's own log line, so every
`report_to` integration and `state.log_history` receive them.

Logged metrics: those of `prefsmith.training.losses` (``rewards/*`` and each loss's own), plus
    logps/chosen, logps/rejected   policy summed log-prob per sequence, nats
    tokens/completion              completion tokens per pair (chosen + rejected)
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler

from prefsmith.training.collate import PER_PAIR_KEYS
from prefsmith.training.guards import check_finite_loss
from prefsmith.training.logprobs import pair_logps
from prefsmith.training.losses import combined_loss, reduce_loss
from prefsmith.training.pair_batch import PairBatch


def pair_batch(logps: torch.Tensor, tokens: torch.Tensor, inputs: dict[str, Any]) -> PairBatch:
    """Split `(2B,)` per-sequence values into a `PairBatch` of `(B,)` fields."""
    chosen, rejected = logps.chunk(2)  # (B,), (B,)
    n_chosen, n_rejected = tokens.to(logps.dtype).chunk(2)  # (B,), (B,)
    optional = {
        key: inputs[key].to(logps.dtype) for key in PER_PAIR_KEYS if key in inputs
    }  # (B,) each
    return PairBatch(
        policy_chosen_logps=chosen,
        policy_rejected_logps=rejected,
        chosen_tokens=n_chosen,
        rejected_tokens=n_rejected,
        **optional,
    )


class EpochSeededLengthSampler(LengthGroupedSampler):
    """HF's length-grouped order, shuffled by a generator seeded from (seed, epoch).

    HF's own sampler shuffles from the global RNG when an epoch starts; a run resumed partway
    through a later epoch restores the RNG state of its checkpoint, not of that epoch's start,
    and so sees another order (other batches, other weights) than an uninterrupted run.
    """

    def __init__(self, batch_size: int, *, lengths: list[int], seed: int) -> None:
        super().__init__(batch_size, lengths=lengths)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:  # called by HF (and accelerate) at each epoch
        self.epoch = int(epoch)

    def __iter__(self):
        self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return super().__iter__()


class PreferenceTrainer(Trainer):
    """HF Trainer whose loss is `combined_loss` over chosen/rejected pairs.

    Args (besides the Trainer's):
        loss_terms: `[(name, weight, hyperparameters)]` as `combined_loss` takes them.
        nll_weight: weight of the chosen-response NLL term.
        logprob_chunk_tokens: LM-head chunk size (positions) for the log-probs.
    """

    loss_is_scaled_for_ga = False  # a per-batch mean: the Trainer divides by accumulation steps

    def __init__(
        self,
        *args,
        loss_terms: list[tuple[str, float, dict]],
        nll_weight: float = 0.0,
        logprob_chunk_tokens: int = 2048,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.loss_terms = loss_terms
        self.nll_weight = nll_weight
        self.logprob_chunk_tokens = logprob_chunk_tokens
        self._pending: dict[str, list[torch.Tensor]] = defaultdict(list)  # 0-d, on the device

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler):
            return EpochSeededLengthSampler(
                sampler.batch_size, lengths=list(sampler.lengths), seed=self.args.seed
            )
        return sampler

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """forward → log-probs → combined loss → weighted mean over pairs → guard → metrics."""
        chunk = self.logprob_chunk_tokens
        logps, tokens = pair_logps(model, inputs, chunk_tokens=chunk)  # (2B,), (2B,)
        batch = pair_batch(logps, tokens, inputs)
        per_pair, metrics = combined_loss(batch, terms=self.loss_terms, nll_weight=self.nll_weight)
        loss = reduce_loss(per_pair, weights=batch.weight)  # 0-d
        metrics["logps/chosen"] = batch.policy_chosen_logps.detach().mean()
        metrics["logps/rejected"] = batch.policy_rejected_logps.detach().mean()
        metrics["tokens/completion"] = (batch.chosen_tokens + batch.rejected_tokens).mean()
        self._check_finite(loss, metrics)  # the step's one host sync
        for key, value in metrics.items():  # kept on the device until the next log
            self._pending[key].append(
                torch.as_tensor(value, dtype=torch.float32, device=loss.device).detach().reshape(())
            )
        return (loss, {"per_pair": per_pair.detach()}) if return_outputs else loss

    def _check_finite(self, loss: torch.Tensor, metrics: dict[str, Any]) -> None:
        """Stop on a NaN/inf loss; reads one bool from the device, the metrics only on failure."""
        if bool(torch.isfinite(loss.detach())):
            return
        values = {k: float(v) for k, v in metrics.items()}
        check_finite_loss(float(loss.detach()), step=self.state.global_step, metrics=values)

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        """Add the mean of each loss metric since the last log to the Trainer's log line."""
        prefix = "eval_" if any(k.startswith("eval_") for k in logs) else ""
        logs.update({prefix + k: v for k, v in self._pending_means().items()})
        super().log(logs, *args, **kwargs)

    def _pending_means(self) -> dict[str, float]:
        """Each metric's mean since the last log, averaged over ranks, read in one host sync."""
        keys = sorted(k for k, v in self._pending.items() if v)
        if not keys:
            return {}
        means = torch.stack([torch.stack(self._pending[k]).mean() for k in keys])  # (K,)
        self._pending.clear()
        return dict(zip(keys, self._averaged_over_ranks(means).tolist(), strict=True))

    def _averaged_over_ranks(self, means: torch.Tensor) -> torch.Tensor:
        """Each rank saw its own pairs: average the `(K,)` metrics over ranks, as the Trainer does
        for the loss (every rank calls `log` at the same steps, with the same keys)."""
        if self.args.world_size <= 1:
            return means
        return self.accelerator.reduce(means.to(self.args.device), reduction="mean")  # (K,)
