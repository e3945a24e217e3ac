"""Small held-out tables and a perturbed copy of the tiny policy, shared by the evaluation tests."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from prefsmith.schemas.ids import prompt_id, response_id
from prefsmith.schemas.io import write_table
from prefsmith.schemas.tables import PROMPTS, RESPONSES


def write_prompts(path: Path, texts: list[str]) -> tuple[Path, list[str]]:
    rows = [
        {
            "prompt_id": prompt_id([{"role": "user", "content": t}]),
            "messages": [{"role": "user", "content": t}],
            "source": "test",
            "metadata": "{}",
        }
        for t in texts
    ]
    return write_table(rows, path, PROMPTS), [r["prompt_id"] for r in rows]


def write_responses(path: Path, answers: dict[str, list[str]]) -> Path:
    rows = [
        {
            "prompt_id": pid,
            "response_id": response_id(pid, i),
            "sample_idx": i,
            "response": text,
            "n_tokens": len(text.split()),
            "finish_reason": "stop",
            "generator": "test",
            "gen_config_hash": "x",
        }
        for pid, texts in answers.items()
        for i, text in enumerate(texts)
    ]
    return write_table(rows, path, RESPONSES)


def perturbed_policy(policy: Path, out: Path, *, scale: float, seed: int = 0) -> Path:
    """A copy of `policy` (weights + tokenizer) with Gaussian noise added to every weight."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (out / "config.json").is_file():
        return out
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(policy)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(scale * torch.randn_like(param))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(policy).save_pretrained(out)
    return out


def answers(prompt_ids: list[str], *, per_prompt: int, seed: int = 0) -> dict[str, list[str]]:
    rng = random.Random(seed)
    words = "the cat sees a red bird and the dog runs fast".split()
    return {
        pid: [
            " ".join(rng.choice(words) for _ in range(rng.randint(2, 9))) for _ in range(per_prompt)
        ]
        for pid in prompt_ids
    }


@pytest.fixture(scope="session")
def tuned_policy(tiny, tmp_path_factory):
    """The tiny policy with noise on its weights: a stand-in for a tuned checkpoint."""
    return perturbed_policy(tiny.policy, tmp_path_factory.mktemp("tuned") / "policy", scale=0.02)


@pytest.fixture
def heldout(tmp_path):
    """(prompts table, responses table, prompt ids): 3 prompts x 2 answers, one unknown prompt's answer."""
    prompts, ids = write_prompts(
        tmp_path / "prompts.parquet",
        ["tell me about the cat", "count to five", "what color is the moon ?"],
    )
    texts = answers(ids, per_prompt=2)
    texts["unknown-prompt"] = ["the dog"]
    return prompts, write_responses(tmp_path / "responses.parquet", texts), ids
