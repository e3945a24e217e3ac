"""LoRA adapters (peft; Hu et al. 2021, arXiv:2106.09685) in the train stage: wrap the policy,
refuse 4-bit loading where it cannot run, and take the reference log-probs from the base with
the adapter disabled, so a LoRA run never loads a second copy of the model.

What an adapter checkpoint holds, and how generation and the KL estimate load it (merged into a
plain model folder), is `prefsmith.generation.checkpoints`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prefsmith.schemas.errors import ConfigError
from prefsmith.schemas.train_configs import AdapterConfig, TrainConfig

logger = logging.getLogger(__name__)


def lora_config(adapter: AdapterConfig):
    """peft's LoraConfig for a causal LM from our AdapterConfig."""
    from peft import LoraConfig

    return LoraConfig(
        task_type="CAUSAL_LM",
        r=adapter.r,
        lora_alpha=adapter.alpha,
        lora_dropout=adapter.dropout,
        target_modules=adapter.target_modules,
    )


def with_adapter(model, adapter: AdapterConfig, *, seed: int):
    """`model` (frozen) with a fresh LoRA adapter; only the adapter's weights train. Its A
    matrices are drawn from `seed`: HF Trainer seeds only after the model exists, and what ran
    before (a DeepSpeed engine's set-up) would otherwise decide the draw."""
    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training

    if adapter.load_in_4bit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = get_peft_model(model, lora_config(adapter))
    trainable, total = model.get_nb_trainable_parameters()
    logger.info(
        "adapter: %d of %d parameters train (%.2f%%)", trainable, total, 100 * trainable / total
    )
    return model


def quantization_config(adapter: AdapterConfig | None):
    """The 4-bit (NF4) loading config where asked; refuses a machine without CUDA in one line."""
    if adapter is None or not adapter.load_in_4bit:
        return None
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(
            "train.adapter.load_in_4bit: 4-bit loading (bitsandbytes) needs a CUDA GPU and this "
            "machine has none; set load_in_4bit: false to train the adapter on the full base"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as error:
        raise ConfigError(
            "train.adapter.load_in_4bit: bitsandbytes is not installed; "
            "pip install bitsandbytes==0.50.2 on the GPU machine"
        ) from error
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
    )


def base_is_reference(config: TrainConfig, *, pairs: Path, has_reference: bool) -> bool:
    """An adapter run on pairs without reference log-probs whose loss needs them: they come from
    the policy's own base, adapter disabled (add_base_reference). Refused under ZeRO-3 in one
    line: its weights are partitioned at load, so no rank holds the base for that pass; call
    once the TrainingArguments exist (they switch ZeRO-3 on)."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    from prefsmith.training.losses import needs_reference

    wanted = any(needs_reference(name, **params) for name, _, params in config.terms())
    if not (config.adapter is not None and not has_reference and wanted):
        return False
    if is_deepspeed_zero3_enabled():
        raise ConfigError(
            f"{pairs}: no reference log-probs, and a LoRA run under ZeRO-3 cannot take them from "
            "its partitioned base; run the reference stage first (prefsmith reference) or use "
            "deepspeed: zero2"
        )
    return True


def add_base_reference(
    model, examples: list[dict[str, Any]], *, pad_id: int, token_budget: int
) -> None:
    """Set each example's reference log-probs from the base: `model` with its adapter disabled
    (the frozen weights the adapter trains over), in eval mode, so no second copy is loaded.
    Several ranks split the batches of one pass and sum the parts: each value is computed once,
    in the batch it would have in one process, so the result does not depend on the ranks."""
    from prefsmith.training.ranks import world_and_rank
    from prefsmith.training.reference import pair_sequences, sequence_logps

    sequences = pair_sequences(
        (e["prompt_ids"], e["chosen_ids"], e["rejected_ids"]) for e in examples
    )
    was_training = model.training
    model.eval()
    world, rank = world_and_rank()
    with model.disable_adapter():
        part = sequence_logps(
            model, sequences, token_budget=token_budget, pad_id=pad_id, part=(rank, world)
        )
    model.train(was_training)
    mine = sum(value is not None for value in part)
    logger.info("base reference: rank %d of %d computed %d of %d", rank, world, mine, len(part))
    logps = _gathered(part, device=next(model.parameters()).device)
    for i, example in enumerate(examples):
        example["ref_chosen_logps"] = logps[2 * i]
        example["ref_rejected_logps"] = logps[2 * i + 1]


def _gathered(part: list[tuple[float, int] | None], *, device) -> list[float]:
    """Every rank's part of a split pass, in one list of log-probs (float64: the sum of one
    computed value and zeros is that value exactly). On the model's device: NCCL reduces only
    GPU tensors."""
    import torch

    from prefsmith.schemas.errors import StageError
    from prefsmith.training.ranks import sum_over_ranks

    computed = [i for i, result in enumerate(part) if result is not None]
    values = torch.zeros(len(part), dtype=torch.float64)
    values[computed] = torch.tensor([part[i][0] for i in computed], dtype=torch.float64)
    done = torch.zeros(len(part), dtype=torch.int64)
    done[computed] = 1
    values, done = values.to(device), done.to(device)
    sum_over_ranks(values)
    sum_over_ranks(done)
    if not bool((done == 1).all()):  # a rank that skipped or doubled a batch
        raise StageError(f"base reference: sequences computed {done.tolist()} times, not once")
    return values.tolist()
