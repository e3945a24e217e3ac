"""The model and pairs `train_vs_trl.py` trains on, built once under its `--root`.

Two sizes (`SIZES`), each a random-init LlamaForCausalLM over the byte-level BPE tokenizer of
`prefsmith.flows.tiny` (vocab 384), saved with float32 weights:
- `tiny`: hidden 256, 4 layers, 4 heads (2 KV), MLP 512 (~3M parameters); 64 pairs, prompts of
  ~64 tokens after the chat template, responses of 64-128 tokens;
- `large`: hidden 640, 8 layers, 10 heads (2 KV), MLP 1792 (~36M parameters); 32 pairs, prompts
  of ~128 tokens, responses of 64-256 tokens (uniform), the lengths the issue calls realistic;
- texts are random words of `prefsmith.flows.tiny.WORDS`, seeded;
- reference log-probs precomputed with `prefsmith reference` (float32), so that each training
  step on either side is one policy forward/backward.
"""

from __future__ import annotations

import random
from pathlib import Path

SIZES = {
    "tiny": {"hidden": 256, "layers": 4, "heads": 4, "mlp": 512, "pairs": 64, "prompt": 64,
             "responses": (64, 128)},
    "large": {"hidden": 640, "layers": 8, "heads": 10, "mlp": 1792, "pairs": 32, "prompt": 128,
              "responses": (64, 256)},
}  # fmt: skip


def _text_of_tokens(tokenizer, rng: random.Random, n_tokens: int) -> str:
    """Random words whose tokenization is about `n_tokens` long."""
    from prefsmith.flows.tiny import WORDS

    words: list[str] = []
    while len(tokenizer(" ".join(words), add_special_tokens=False).input_ids) < n_tokens:
        words.append(rng.choice(WORDS))
    return " ".join(words)


def build_model(model_dir: Path, size: dict):
    """Write the tokenizer and a seeded random-init Llama into `model_dir`; returns the tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from prefsmith.flows.tiny import build_tokenizer

    build_tokenizer(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=size["hidden"],
        intermediate_size=size["mlp"],
        num_hidden_layers=size["layers"],
        num_attention_heads=size["heads"],
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(str(model_dir))
    return tokenizer


def pair_rows(tokenizer, size: dict, *, seed: int = 0) -> list[dict]:
    """`size["pairs"]` rows of the PAIRS table, one prompt each, texts of random words."""
    rng = random.Random(seed)
    rows = []
    for i in range(size["pairs"]):
        prompt = _text_of_tokens(tokenizer, rng, size["prompt"] - 8)  # the template adds ~8
        chosen, rejected = (
            _text_of_tokens(tokenizer, rng, rng.randint(*size["responses"]) - 1) for _ in "ab"
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


def build(root: Path, size: str = "tiny") -> tuple[Path, Path]:
    """Tokenizer + model folder and a pairs table with reference log-probs; returns their paths."""
    from prefsmith.schemas.config_base import parse_config
    from prefsmith.schemas.io import write_table
    from prefsmith.schemas.tables import PAIRS
    from prefsmith.schemas.train_configs import ReferenceConfig
    from prefsmith.training.reference import reference_pass

    model_dir = root / "model"
    tokenizer = build_model(model_dir, SIZES[size])
    pairs = write_table(pair_rows(tokenizer, SIZES[size]), root / "pairs.parquet", PAIRS)
    ref = parse_config(
        ReferenceConfig,
        {"model": str(model_dir), "max_length": 512, "max_prompt_length": 256, "dtype": "float32"},
    )
    return model_dir, reference_pass({"pairs": pairs}, config=ref, out_dir=root / "ref").output
