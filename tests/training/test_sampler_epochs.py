"""The seeded length-grouped sampler under accelerate's multi-process sharding (issue 13).

HF calls `set_epoch` on the prepared data loader; with several ranks accelerate wraps our sampler
in a `BatchSamplerShard` and must pass the epoch down to it, or every rank would replay epoch 0's
order (and a resumed run another order than an uninterrupted one). This uses accelerate's real
`prepare_data_loader` for rank 1 of 2, without starting processes (it takes the rank as input).
"""

from __future__ import annotations

import torch
from accelerate.data_loader import prepare_data_loader
from torch.utils.data import DataLoader

from prefsmith.training.trainer import EpochSeededLengthSampler

LENGTHS = [5, 17, 3, 9, 12, 30, 1, 8, 22, 14, 6, 11, 27, 2, 19, 4]


def _sampler() -> EpochSeededLengthSampler:
    return EpochSeededLengthSampler(2, lengths=LENGTHS, seed=7)


def _rank_batches(epoch: int, *, rank: int, world: int = 2) -> list[list[int]]:
    sampler = _sampler()
    loader = DataLoader(list(range(len(LENGTHS))), batch_size=2, sampler=sampler)
    prepared = prepare_data_loader(
        loader, num_processes=world, process_index=rank, put_on_device=False
    )
    prepared.set_epoch(epoch)  # what HF's training loop calls at each epoch
    assert sampler.epoch == epoch
    return [batch.tolist() for batch in prepared]


def _single_process_batches(epoch: int) -> list[list[int]]:
    sampler = _sampler()
    sampler.set_epoch(epoch)
    order = list(sampler)
    return [order[i : i + 2] for i in range(0, len(order), 2)]


def test_each_rank_gets_its_share_of_that_epochs_order():
    for epoch in (0, 3):
        whole = _single_process_batches(epoch)
        ranks = [_rank_batches(epoch, rank=r) for r in (0, 1)]
        assert ranks[0] == whole[0::2] and ranks[1] == whole[1::2]
        assert sorted(sum(ranks[0] + ranks[1], [])) == list(range(len(LENGTHS)))


def test_epochs_differ_and_repeat():
    assert _rank_batches(1, rank=1) != _rank_batches(2, rank=1)  # the epoch reaches the sampler
    assert _rank_batches(2, rank=1) == _rank_batches(2, rank=1)  # and fixes its order
    torch.manual_seed(123)  # the global RNG plays no part
    assert _rank_batches(2, rank=1) == _rank_batches(2, rank=1)
