"""The policy the train stage steps: its tokenizer and weights, loaded from `TrainConfig.policy`
in the configured dtype (bfloat16 halves the weight memory; float32 is the default, and the
only choice under DeepSpeed, whose engine casts itself), 4-bit where a LoRA adapter asks for it
on a GPU, and wrapped in a fresh LoRA adapter when `train.adapter` is set.
"""

from __future__ import annotations

from prefsmith.schemas.train_configs import TrainConfig


def load_policy(config: TrainConfig):
    """Tokenizer and policy from `config.policy` (weights in `config.dtype`, 4-bit where the
    adapter asks), checked against each other, with a fresh LoRA adapter when configured."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prefsmith.training.adapters import quantization_config, with_adapter
    from prefsmith.training.guards import check_tokenizer_model

    remote = config.trust_remote_code
    quantized = quantization_config(config.adapter)  # refuses 4-bit without CUDA, before loading
    tokenizer = AutoTokenizer.from_pretrained(config.policy, trust_remote_code=remote)
    model = AutoModelForCausalLM.from_pretrained(
        config.policy,
        dtype=getattr(torch, config.dtype),
        quantization_config=quantized,
        trust_remote_code=remote,
    )
    check_tokenizer_model(tokenizer, model.config, model_name=config.policy)
    if config.adapter is not None:
        model = with_adapter(model, config.adapter, seed=config.seed)
        if config.gradient_checkpointing:  # the frozen embeddings give no grad to recompute from
            model.enable_input_require_grads()
    return tokenizer, model


def pad_token_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
