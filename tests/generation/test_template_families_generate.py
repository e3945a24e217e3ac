"""Generation over five real chat templates: both backends stop at the family's end of turn, and
what was sampled is exactly what the reference pass and the trainer render.

Each family's policy (tests/template_families.py) is programmed to answer the prompt with the
tokens of "the dog runs fast" and then its end-of-turn token, which for Gemma-2 and Phi-3 is not
the tokenizer's EOS: a backend that stopped at the tokenizer's EOS alone would run on to the
token cap (`finish_reason == "length"`). The training-side cells are in
tests/training/test_template_families.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))
from template_families import FAMILIES, build_family

from prefsmith.generation.stage import generate
from prefsmith.generation.turn_end import end_of_turn_ids
from prefsmith.schemas.data_configs import GenerateConfig
from prefsmith.schemas.io import read_frame
from prefsmith.schemas.tables import RESPONSES
from prefsmith.training.render import render_pairs

USER = {"role": "user", "content": "tell me about the cat"}
SYSTEM = {"role": "system", "content": "you are helpful"}
REFUSED_SYSTEM = {"gemma2": "template_error", "mistral_v03": "template_not_prefix_stable"}


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {name: build_family(name, root) for name in FAMILIES}


def _generate(family, make_prompts, tmp_path, backend: str):
    table = make_prompts([[USER], [SYSTEM, USER]], name=f"prompts-{family.name}")
    config = GenerateConfig(
        model=str(family.folder),
        backend=backend,
        dtype="float32",
        max_model_len=256,
        sampling={"n": 1, "temperature": 0.0, "max_new_tokens": 12},
    )
    result = generate({"prompts": table}, config=config, out_dir=tmp_path / backend)
    return read_frame(result.output, RESPONSES), result.quarantine


def _check(family, responses, quarantine):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(family.folder))
    refused = REFUSED_SYSTEM.get(family.name)
    reasons = pl.read_parquet(quarantine)["reason"].to_list() if quarantine else []
    assert reasons == ([refused] if refused else [])
    assert responses.height == (1 if refused else 2)
    assert set(responses["finish_reason"]) == {"stop"}
    assert set(responses["response"]) == {"the dog runs fast"}
    rows = [
        {"pair_id": "p", "messages": [USER], "chosen": responses["response"][0], "rejected": "no"}
    ]
    (pair,), _ = render_pairs(
        rows,
        tokenizer=tokenizer,
        end_ids=end_of_turn_ids(family.folder, tokenizer),
        max_length=256,
        max_prompt_length=128,
    )
    assert len(pair.chosen_ids) == responses["n_tokens"][0]  # sampled == trained, end included
    assert tokenizer.convert_ids_to_tokens(pair.chosen_ids[-1]) == family.end_of_turn


@pytest.mark.parametrize("name", list(FAMILIES))
def test_transformers_backend_stops_at_the_end_of_turn(families, name, make_prompts, tmp_path):
    _check(families[name], *_generate(families[name], make_prompts, tmp_path, "transformers"))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FAMILIES))
def test_vllm_stops_at_the_end_of_turn(families, name, make_prompts, tmp_path):
    _check(families[name], *_generate(families[name], make_prompts, tmp_path, "vllm"))


def test_without_the_generation_config_list_gemma_runs_past_its_turn(
    families, make_prompts, tmp_path
):
    """Negative control: with only the tokenizer's `<eos>`, Gemma-2 never stops at
    `<end_of_turn>` and the response runs to the token cap."""
    import json
    import shutil

    folder = tmp_path / "gemma-eos-only"
    shutil.copytree(families["gemma2"].folder, folder)
    settings = json.loads((folder / "generation_config.json").read_text())
    settings["eos_token_id"] = settings["eos_token_id"][0]  # <eos> alone
    (folder / "generation_config.json").write_text(json.dumps(settings))
    family = type(families["gemma2"])("gemma2", folder, "<end_of_turn>")
    responses, _ = _generate(family, make_prompts, tmp_path, "transformers")
    assert set(responses["finish_reason"]) == {"length"}
    assert set(responses["n_tokens"]) == {12}
