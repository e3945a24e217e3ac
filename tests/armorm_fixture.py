"""Builders for the score tests: a tiny ArmoRM-like custom model and small input tables.

(Loaded by path from the test modules, so no tests/scoring/conftest.py is needed.)

The ArmoRM-like model is saved with `auto_map` so it loads only as remote code.

Mirrors the interface of ArmoRM-Llama3-8B-v0.1 (arXiv:2406.12845): a Llama backbone, the hidden
state of the last real token, a linear regression head giving K objective rewards (B, K), a gating
head giving softmax weights (B, K), and `score` = Σ_k gate_k · reward_k (B, 1). The model code is
written as a file into the model folder and registered for `AutoModelForSequenceClassification`,
so `save_pretrained` records it in `auto_map` exactly as a hub checkpoint with custom code does.
"""

from __future__ import annotations

import importlib.util
import json
import random
import shutil
import sys
from pathlib import Path

OBJECTIVE_NAMES = [
    "helpsteer-helpfulness",
    "helpsteer-correctness",
    "helpsteer-coherence",
    "helpsteer-complexity",
    "helpsteer-verbosity",
    "ultrafeedback-overall_score",
    "ultrafeedback-instruction_following",
    "ultrafeedback-truthfulness",
    "ultrafeedback-honesty",
    "ultrafeedback-helpfulness",
    "beavertails-is_safe",
    "prometheus-score",
    "argilla-overall_quality",
    "argilla-judge_lm",
    "code-complexity",
    "code-style",
    "code-explanation",
    "code-instruction-following",
    "code-readability",
]

MODELING_SOURCE = '''
"""Tiny ArmoRM-like reward model (test fixture)."""
from dataclasses import dataclass

import torch
from torch import nn
from transformers import LlamaConfig, LlamaModel, LlamaPreTrainedModel
from transformers.utils import ModelOutput


class TinyArmoConfig(LlamaConfig):
    model_type = "tiny_armo"

    def __init__(self, objective_names=None, **kwargs):
        self.objective_names = list(objective_names or [])
        super().__init__(**kwargs)


@dataclass
class TinyArmoOutput(ModelOutput):
    score: torch.FloatTensor = None
    rewards: torch.FloatTensor = None
    gating_output: torch.FloatTensor = None


class TinyArmoForRewardModel(LlamaPreTrainedModel):
    config_class = TinyArmoConfig
    base_model_prefix = "model"

    def __init__(self, config):
        super().__init__(config)
        k = len(config.objective_names)
        self.model = LlamaModel(config)
        self.regression_layer = nn.Linear(config.hidden_size, k, bias=False)
        self.gating = nn.Linear(config.hidden_size, k)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)  # (B, T)
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        last = attention_mask.sum(dim=-1) - 1  # (B,) right padding: last real token
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # (B, H)
        rewards = self.regression_layer(pooled)  # (B, K)
        gates = torch.softmax(self.gating(pooled), dim=-1)  # (B, K)
        score = (gates * rewards).sum(dim=-1, keepdim=True)  # (B, 1)
        return TinyArmoOutput(score=score, rewards=rewards, gating_output=gates)
'''


def _import_modeling(folder: Path):
    path = folder / "modeling_tiny_armo.py"
    path.write_text(MODELING_SOURCE)
    spec = importlib.util.spec_from_file_location("modeling_tiny_armo", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["modeling_tiny_armo"] = module  # save_pretrained looks the module up by name
    spec.loader.exec_module(module)
    return module


def build_tiny_armorm(
    out_dir: Path, tokenizer_dir: Path, *, hidden: int = 64, seed: int = 3
) -> Path:
    """Save a tiny ArmoRM-like model (19 named objectives) + tokenizer with `auto_map` at out_dir."""
    import torch
    from transformers import AutoTokenizer

    out_dir = Path(out_dir)
    code_dir = out_dir.parent / f"{out_dir.name}-code"
    code_dir.mkdir(parents=True, exist_ok=True)
    module = _import_modeling(code_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    config = module.TinyArmoConfig(
        objective_names=OBJECTIVE_NAMES,
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=0.2,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    module.TinyArmoConfig.register_for_auto_class()
    module.TinyArmoForRewardModel.register_for_auto_class("AutoModelForSequenceClassification")
    model = module.TinyArmoForRewardModel(config)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    shutil.rmtree(code_dir)
    sys.modules.pop("modeling_tiny_armo", None)
    return out_dir


def write_prompts(records: list[dict], out_dir: Path) -> tuple[Path, list[str]]:
    """Run the real prompts stage on `records`; return (prompts.parquet, prompt_ids in order)."""
    from prefsmith.generation.prompts import load_prompts
    from prefsmith.schemas.data_configs import PromptsConfig
    from prefsmith.schemas.io import read_frame
    from prefsmith.schemas.tables import PROMPTS

    out_dir.mkdir(parents=True, exist_ok=True)
    source = out_dir / "prompts.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = load_prompts({}, config=PromptsConfig(path=str(source)), out_dir=out_dir)
    return result.output, read_frame(result.output, PROMPTS)["prompt_id"].to_list()


def write_responses(pairs: list[tuple[str, str]], path: Path, *, seed: int | None = 0) -> Path:
    """A responses table from (prompt_id, text) pairs, rows shuffled so position means nothing."""
    from prefsmith.schemas.ids import response_id
    from prefsmith.schemas.io import write_table
    from prefsmith.schemas.tables import RESPONSES

    counters: dict[str, int] = {}
    rows = []
    for pid, text in pairs:
        k = counters.get(pid, 0)
        counters[pid] = k + 1
        rows.append(
            {
                "prompt_id": pid,
                "response_id": response_id(pid, k),
                "sample_idx": k,
                "response": text,
                "n_tokens": len(text.split()),
                "finish_reason": "stop",
                "generator": "test",
                "gen_config_hash": "0",
            }
        )
    if seed is not None:
        random.Random(seed).shuffle(rows)
    return write_table(rows, path, RESPONSES)


def words(n: int, *, seed: int = 0) -> str:
    """n words of the tiny tokenizer's vocabulary."""
    from prefsmith.flows.tiny import WORDS

    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n))
