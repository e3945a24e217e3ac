"""Fixtures of the training tests: a small pairs table written with the real schema."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # shared loss cases: loss_cases

import random

import pytest

from prefsmith.flows.tiny import sample_answer, sample_prompt
from prefsmith.schemas.ids import pair_id, prompt_id
from prefsmith.schemas.io import write_table
from prefsmith.schemas.tables import PAIRS


def make_pair_rows(n: int, *, seed: int = 0) -> list[dict]:
    """`n` pairs: a prompt, a chosen answer starting 'yes' and a rejected random answer."""
    rng = random.Random(seed)
    rows = []
    for index in range(n):
        messages = [{"role": "user", "content": f"{sample_prompt(rng)} {index}"}]
        chosen = "yes " + " ".join(
            rng.choice(["one", "two", "red", "sun"]) for _ in range(rng.randint(2, 8))
        )
        rejected = sample_answer(rng)
        ids = (f"r{index}-0", f"r{index}-1")
        score_chosen, score_rejected = 2.0 + rng.random(), rng.random()
        rows.append(
            {
                "pair_id": pair_id(*ids),
                "prompt_id": prompt_id(messages),
                "messages": messages,
                "chosen": chosen,
                "rejected": rejected,
                "chosen_response_id": ids[0],
                "rejected_response_id": ids[1],
                "score_chosen": score_chosen,
                "score_rejected": score_rejected,
                "margin": score_chosen - score_rejected,
                "strategy": "best_vs_worst",
                "scorer": "test-rule",
            }
        )
    return rows


@pytest.fixture
def pairs_file(tmp_path):
    """A 16-pair table at tmp_path/pairs/pairs.parquet."""
    return write_table(make_pair_rows(16), tmp_path / "pairs" / "pairs.parquet", PAIRS)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny.policy))


@pytest.fixture(scope="session")
def pair_rows():
    """The `make_pair_rows(n, seed=...)` builder (test modules cannot import conftest)."""
    return make_pair_rows
