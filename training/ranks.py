"""What the train stage does differently when a launcher (torchrun, deepspeed) starts several ranks.

Every rank runs the whole `prefsmith.training.stage.train`: it reads and renders the pairs itself, HF
`Trainer` gives rank r the r-th per-device batch of one shared, seeded permutation (accelerate's
`BatchSamplerShard`), DeepSpeed averages the gradients, and only global rank 0 writes the final
checkpoint, the manifest and the quarantine. This module holds the few rank-aware pieces:

- `cpu_process_group`: on a host without a GPU, accelerate 1.15 counts one process under a
  launcher, so every rank would read the same batches (see its docstring);
- `log_global_batch`: the pairs per optimizer step, the number a learning rate belongs to;
- `check_same_examples`: the ranks rendered the same pairs (a pairs path on node-local disk
  that differs between nodes would otherwise train silently on a mixture);
- `wait_for_all`: a barrier, so no rank returns before rank 0 has written the outputs.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from prefsmith.schemas.errors import StageError
from prefsmith.schemas.ids import content_hash
from prefsmith.schemas.train_configs import TrainConfig

logger = logging.getLogger(__name__)


def launched_world_size() -> int:
    """Processes the launcher started (WORLD_SIZE; 1 when run directly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def _has_device() -> bool:
    import torch

    xpu = getattr(torch, "xpu", None)
    return torch.cuda.is_available() or bool(xpu is not None and xpu.is_available())


def cpu_process_group(*, deepspeed: bool) -> dict[str, Any]:
    """Extra TrainingArguments that make several CPU processes one data-parallel job.

    accelerate 1.15 picks its process-group backend from the device it finds (nccl, xccl, ...).
    On a host with none it sets no backend and then reports `num_processes == 1` although
    torch.distributed (DeepSpeed's) spans all ranks; without DeepSpeed it skips DDP altogether.
    Measured with torchrun and 2 processes: both ranks then read the same batches, so the
    global batch silently equals the per-device batch. The fix is accelerate's own: `use_cpu`
    (gloo DDP) without DeepSpeed; with DeepSpeed a PartialState created here with backend
    gloo and handed over with `use_configured_state` (TrainingArguments would otherwise rebuild
    it the broken way). Nothing changes with one process or where a GPU is present.
    """
    if launched_world_size() <= 1 or _has_device():
        return {}
    if not deepspeed:
        return {"use_cpu": True}
    from accelerate import PartialState

    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"  # as TrainingArguments sets it, for this call
    try:
        state = PartialState(backend="gloo")
    finally:
        del os.environ["ACCELERATE_USE_DEEPSPEED"]
    logger.info("CPU process group: %d ranks over gloo (DeepSpeed)", state.num_processes)
    return {"accelerator_config": {"use_configured_state": True}}


def log_global_batch(world_size: int, *, config: TrainConfig) -> int:
    """Log and return the pairs per optimizer step: per device x accumulation x processes."""
    per_device = config.per_device_train_batch_size
    accumulation = config.gradient_accumulation_steps
    global_batch = per_device * accumulation * world_size
    logger.info(
        "global batch: %d pairs per optimizer step = %d per device x %d accumulation x "
        "%d processes",
        global_batch,
        per_device,
        accumulation,
        world_size,
    )
    if world_size > 1 and config.group_by_length:
        logger.warning(
            "group_by_length with %d processes: the length-grouped order depends on the "
            "per-device batch, so steps differ from a run with another process count "
            "(set group_by_length: false to compare runs)",
            world_size,
        )
    return global_batch


def world_and_rank() -> tuple[int, int]:
    """(world size, rank) of this process; (1, 0) outside a process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def sum_over_ranks(values):
    """`values` summed over every rank, in place (on the device the backend reduces: CPU for
    gloo, GPU for NCCL); itself in one process."""
    import torch.distributed as dist

    if world_and_rank()[0] > 1:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def check_same_examples(rows: list[dict[str, Any]], *, lengths: list[int]) -> None:
    """Raise StageError unless every rank read the same pairs and rendered the same lengths."""
    import torch.distributed as dist

    world, _ = world_and_rank()
    if world == 1:
        return
    digest = content_hash({"pairs": [str(r["pair_id"]) for r in rows], "lengths": lengths})
    digests: list[Any] = [None] * world
    dist.all_gather_object(digests, digest)
    if len(set(digests)) > 1:
        raise StageError(
            f"the {world} ranks read different pairs (digest by rank: {digests}); put "
            "the pairs table and the policy on storage every node sees alike"
        )


def wait_for_all() -> None:
    """Barrier across ranks (no-op in one process)."""
    import torch.distributed as dist

    if world_and_rank()[0] > 1:
        dist.barrier()
