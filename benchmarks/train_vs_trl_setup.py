"""The model and pairs `train_vs_trl.py` trains on, built once under its `--root`.

- model: random-init LlamaForCausalLM, hidden 256, 4 layers, 4 heads (2 KV), MLP 512, vocab 384
  (the byte-level BPE tokenizer of `prefsmith.flows.tiny`), saved with float32 weights;
- pairs: `N_PAIRS`, prompts of ~`PROMPT_TOKENS` tokens after the chat template, responses of
  `RESPONSE_TOKENS` tokens, random words of `prefsmith.flows.tiny.WORDS`, seeded;
- reference log-probs precomputed with `prefsmith reference` (float32), so that each training
  step on either side is one policy forward/backward.
"""

from __future__ import annotations

import random
from pathlib import Path

N_PAIRS, PROMPT_TOKENS, RESPONSE_TOKENS = 64, 64, (64, 128)


def _text_of_tokens(tokenizer, rng: random.Random, n_tokens: int) -> str:
    """Random words whose tokenization is about `n_tokens` long."""
    from prefsmith.flows.tiny import WORDS

    words: list[str] = []
    while len(tokenizer(" ".join(words), add_special_tokens=False).input_ids) < n_tokens:
        words.append(rng.choice(WORDS))
    return " ".join(words)


def build_model(model_dir: Path):
    """Write the tokenizer and a seeded random-init Llama into `model_dir`; returns the tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from prefsmith.flows.tiny import build_tokenizer

    build_tokenizer(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(str(model_dir))
    return tokenizer


def pair_rows(tokenizer, *, seed: int = 0) -> list[dict]:
    """`N_PAIRS` rows of the PAIRS table, one prompt each, texts of random words."""
    rng = random.Random(seed)
    rows = []
    for i in range(N_PAIRS):
        prompt = _text_of_tokens(tokenizer, rng, PROMPT_TOKENS - 8)  # the template adds ~8 tokens
        chosen, rejected = (
            _text_of_tokens(tokenizer, rng, rng.randint(*RESPONSE_TOKENS) - 1) for _ in "ab"
        )
        rows.append(
            {
                "pair_id": f"p{i}",
                "prompt_id": f"q{i}",
                "messages": [{"role": "user", "content": prompt}],
                "chosen": chosen,
                "rejected": rejected,
                "chosen_response_id": f"q{i}-0",
                "rejected_response_id": f"q{i}-1",
                "score_chosen": 1.0,
                "score_rejected": 0.0,
                "margin": 1.0,
                "strategy": "bench",
                "scorer": "none",
            }
        )
    return rows


def build(root: Path) -> tuple[Path, Path]:
    """Tokenizer + model folder and a pairs table with reference log-probs; returns their paths."""
    from prefsmith.schemas.config_base import parse_config
    from prefsmith.schemas.io import write_table
    from prefsmith.schemas.tables import PAIRS
    from prefsmith.schemas.train_configs import ReferenceConfig
    from prefsmith.training.reference import reference_pass

    model_dir = root / "model"
    tokenizer = build_model(model_dir)
    pairs = write_table(pair_rows(tokenizer), root / "pairs.parquet", PAIRS)
    ref = parse_config(
        ReferenceConfig,
        {"model": str(model_dir), "max_length": 512, "max_prompt_length": 256, "dtype": "float32"},
    )
    return model_dir, reference_pass({"pairs": pairs}, config=ref, out_dir=root / "ref").output
