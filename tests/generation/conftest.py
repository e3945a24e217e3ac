"""Fixtures of the generation tests: small prompt tables and a policy vLLM's CPU kernels accept."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # this folder's helpers: vllm_server


@pytest.fixture
def make_prompts(tmp_path):
    """`make_prompts(texts)` → a prompts table written by the real prompts stage from a JSONL."""
    from prefsmith.generation.prompts import load_prompts
    from prefsmith.schemas.data_configs import PromptsConfig

    def make(texts: list[str] | list[list[dict]], *, name: str = "prompts") -> Path:
        source = tmp_path / f"{name}.jsonl"
        lines = [
            json.dumps({"prompt": t} if isinstance(t, str) else {"messages": t}) for t in texts
        ]
        source.write_text("\n".join(lines) + "\n")
        return load_prompts(
            {}, config=PromptsConfig(path=str(source)), out_dir=tmp_path / name
        ).output

    return make


def tiny_prompt_texts(count: int, *, seed: int = 0) -> list[str]:
    """`count` distinct prompts in the tiny policy's vocabulary."""
    from prefsmith.flows.tiny import sample_prompt

    rng = random.Random(seed)
    return [f"{sample_prompt(rng)} {i}" for i in range(count)]


@pytest.fixture
def prompt_texts():
    return tiny_prompt_texts


@pytest.fixture(scope="session")
def vllm_policy(tiny) -> Path:
    """The tiny policy, as vLLM loads it (head_dim 32: vLLM's CPU attention refuses 16)."""
    return tiny.policy
