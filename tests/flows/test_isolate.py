"""A stage run in its own process returns the same result, and its errors keep their class."""

from __future__ import annotations

import pytest

from prefsmith.flows.isolate import run_isolated
from prefsmith.generation.prompts import load_prompts
from prefsmith.schemas.config_base import parse_config
from prefsmith.schemas.data_configs import PromptsConfig
from prefsmith.schemas.errors import InputError
from prefsmith.schemas.io import read_table
from prefsmith.schemas.tables import PROMPTS


def test_isolated_stage_equals_in_process(tmp_path):
    source = tmp_path / "p.jsonl"
    source.write_text('{"prompt": "x"}\n{"prompt": "y"}\nnot json\n')
    config = parse_config(PromptsConfig, {"path": str(source)})
    here = load_prompts(config, tmp_path / "here")
    there = run_isolated("prefsmith.generation.prompts:load_prompts", config, tmp_path / "there")
    assert read_table(there["output"], PROMPTS) == read_table(here.output, PROMPTS)
    assert there["manifest"].endswith("prompts.manifest.json")


def test_isolated_error_keeps_class_and_message(tmp_path):
    config = parse_config(PromptsConfig, {"path": str(tmp_path / "missing.jsonl")})
    with pytest.raises(InputError, match="prompts file not found"):
        run_isolated("prefsmith.generation.prompts:load_prompts", config, tmp_path)
