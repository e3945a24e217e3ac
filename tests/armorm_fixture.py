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


# Llama-3-Instruct's chat template (data), with its header and end-of-turn special tokens.
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)
EOT, HEADER_START, HEADER_END = "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"

# Stand-in for ArmoRM's modeling_custom.py: it fails on transformers 5 the way the real file does.
STALE_MODELING = (
    "from transformers.models.llama.modeling_llama import LLAMA_INPUTS_DOCSTRING  # gone in v5\n"
)


def build_llama3_tokenizer(out_dir: Path, tokenizer_dir: Path):
    """The tiny tokenizer with Llama-3's template and pad token = end-of-turn `<|eot_id|>`."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    tokenizer.add_special_tokens({"additional_special_tokens": [HEADER_START, HEADER_END, EOT]})
    tokenizer.eos_token = tokenizer.pad_token = EOT
    tokenizer.chat_template = LLAMA3_TEMPLATE
    tokenizer.save_pretrained(str(out_dir))
    return tokenizer


def _llama3_config(tokenizer, *, hidden: int):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=hidden // 32,  # head_dim 32: vLLM's CPU attention minimum
        num_key_value_heads=1,
        max_position_embeddings=512,
        initializer_range=0.2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids(EOT),
        pad_token_id=None,  # the common Llama-3 set-up: only the tokenizer has a pad (= eot)
        tie_word_embeddings=False,
    )


def build_eot_pad_reward_model(out_dir: Path, tokenizer_dir: Path, *, seed: int = 5) -> Path:
    """A tiny LlamaForSequenceClassification, Llama-3 template, pad = eot, no pad_token_id."""
    import torch
    from transformers import LlamaForSequenceClassification

    tokenizer = build_llama3_tokenizer(out_dir, tokenizer_dir)
    config = _llama3_config(tokenizer, hidden=64)
    config.num_labels = 1
    torch.manual_seed(seed)
    LlamaForSequenceClassification(config).save_pretrained(str(out_dir))
    return Path(out_dir)


def _armorm_heads(hidden: int, *, gate_hidden: int, depth: int, seed: int) -> dict:
    """Random ArmoRM heads under the published parameter names (non-identity reward transform)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    k = len(OBJECTIVE_NAMES)
    sizes = [hidden] + [gate_hidden] * depth + [k]
    heads = {"regression_layer.weight": torch.randn(k, hidden, generator=g) * 0.3}
    for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False)):
        heads[f"gating.layers.{i}.weight"] = torch.randn(b, a, generator=g) * (3.0 / a**0.5)
        heads[f"gating.layers.{i}.bias"] = torch.randn(b, generator=g) * 0.5
    heads["gating.logit_scale"] = torch.tensor([1.7])
    heads["reward_transform_matrix"] = torch.eye(k) + 0.3 * torch.randn(k, k, generator=g)
    return heads


def build_published_armorm(
    out_dir: Path, tokenizer_dir: Path, *, hidden: int = 64, seed: int = 7
) -> Path:
    """A tiny checkpoint in ArmoRM-Llama3-8B-v0.1's layout: its config keys, auto_map to a
    modeling_custom.py that fails on transformers 5, and model.safetensors with the published
    parameter names (random weights)."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaModel

    out_dir = Path(out_dir)
    tokenizer = build_llama3_tokenizer(out_dir, tokenizer_dir)
    config = _llama3_config(tokenizer, hidden=hidden)
    torch.manual_seed(seed)
    backbone = LlamaModel(config)
    tensors = {f"model.{k}": v.contiguous() for k, v in backbone.state_dict().items()}
    tensors |= _armorm_heads(hidden, gate_hidden=32, depth=3, seed=seed)
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    declared = config.to_dict() | {
        "architectures": ["LlamaForRewardModelWithGating"],
        "auto_map": {
            "AutoModelForSequenceClassification": "modeling_custom.LlamaForRewardModelWithGating"
        },
        "num_objectives": len(OBJECTIVE_NAMES),
        "gating_temperature": 10,
        "gating_hidden_dim": 32,
        "gating_n_hidden": 3,
        "torch_dtype": "float32",
    }
    (out_dir / "config.json").write_text(json.dumps(declared, indent=2))
    (out_dir / "modeling_custom.py").write_text(STALE_MODELING)
    return out_dir
