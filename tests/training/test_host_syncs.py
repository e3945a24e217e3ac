"""The trainer reads the device once per step (the finite-loss guard) and once per log.

On a GPU every `.item()`, `float(t)`, `bool(t)` or `.tolist()` of a device tensor waits for the
device; counting those reads of torch.Tensor is how a CPU test sees the syncs a GPU run pays.
"""

from __future__ import annotations

import contextlib
import math

import datasets
import pytest
import torch

from prefsmith.schemas.config_base import parse_config
from prefsmith.schemas.errors import StageError
from prefsmith.schemas.train_configs import TrainConfig
from prefsmith.training.logprobs import pair_logps
from prefsmith.training.pair_examples import build_examples, read_pairs
from prefsmith.training.policy import load_policy
from prefsmith.training.stage import make_trainer, training_arguments

READS = ("item", "tolist", "__bool__", "__float__", "__int__")


@contextlib.contextmanager
def counted_reads():
    """Count every host read of a tensor's value while the block runs."""
    counts = {"n": 0}
    originals = {name: getattr(torch.Tensor, name) for name in READS}

    def counting(original):
        def read(self, *args, **kwargs):
            counts["n"] += 1
            return original(self, *args, **kwargs)

        return read

    for name, original in originals.items():
        setattr(torch.Tensor, name, counting(original))
    try:
        yield counts
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


@pytest.fixture
def trainer_and_batch(tiny, pairs_file, tmp_path):
    loss = [{"name": "simpo", "params": {"beta": 2.0}}]  # reference-free: plain pairs
    config = parse_config(
        TrainConfig,
        {"policy": str(tiny.policy), "max_length": 128, "max_prompt_length": 64, "loss": loss,
         "nll_weight": 0.1, "save_steps": 0, "max_steps": 3, "logging_steps": 3},
    )  # fmt: skip
    rows, has_reference = read_pairs(pairs_file, config=config)
    tokenizer, model = load_policy(config)
    examples, _ = build_examples(
        rows, tokenizer=tokenizer, config=config, pairs=pairs_file, has_reference=has_reference
    )
    args = training_arguments(config, out_dir=tmp_path)
    trainer = make_trainer(
        model, tokenizer, datasets.Dataset.from_list(examples), config=config, args=args
    )
    batch = next(iter(trainer.get_train_dataloader()))
    return trainer, batch


def test_a_step_reads_the_device_once_more_than_its_forward(trainer_and_batch):
    trainer, batch = trainer_and_batch
    with counted_reads() as forward:
        pair_logps(trainer.model, batch, chunk_tokens=trainer.logprob_chunk_tokens)
    with counted_reads() as step:
        trainer.compute_loss(trainer.model, batch)
    assert step["n"] == forward["n"] + 1  # the finite-loss guard; no metric is read per step


def test_a_log_reads_every_metric_in_one_sync_and_keeps_their_means(trainer_and_batch):
    trainer, batch = trainer_and_batch
    steps = [trainer.compute_loss(trainer.model, batch) for _ in range(3)]
    pending = {k: [float(v) for v in values] for k, values in trainer._pending.items()}
    assert len(pending) >= 5 and all(len(v) == 3 for v in pending.values())
    with counted_reads() as reads:
        means = trainer._pending_means()
    assert reads["n"] == 1 and trainer._pending == {}
    assert means == pytest.approx({k: sum(v) / 3 for k, v in pending.items()}, rel=1e-6)
    assert all(math.isfinite(float(s.detach())) for s in steps)


def test_a_nan_loss_still_stops_with_its_metrics(trainer_and_batch, monkeypatch):
    trainer, batch = trainer_and_batch
    from prefsmith.training import trainer as trainer_module

    monkeypatch.setattr(
        trainer_module, "reduce_loss", lambda per_pair, weights: per_pair.sum() * float("nan")
    )
    with pytest.raises(
        StageError, match=r"non-finite loss \(nan\) at step 0; metrics: .*logps/chosen="
    ):
        trainer.compute_loss(trainer.model, batch)
