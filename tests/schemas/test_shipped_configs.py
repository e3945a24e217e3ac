"""Every shipped config loads: the examples/ YAML files and the quickstart's pipeline config."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefsmith.flows.quickstart import quickstart_config
from prefsmith.schemas.config_base import load_config, parse_config
from prefsmith.schemas.contracts import TokenLengths
from prefsmith.schemas.pipeline_config import PipelineConfig

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))


def test_there_are_examples_to_check():
    assert EXAMPLES, "examples/*.yaml not found"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_config_loads_with_one_set_of_lengths(path):
    config = load_config(PipelineConfig, path)
    if config.train is not None:
        assert TokenLengths.of(config.reference_config()) == TokenLengths.of(config.train)


def test_quickstart_config_loads_with_one_set_of_lengths(tmp_path):
    data = quickstart_config(tmp_path, tmp_path / "policy")
    config = parse_config(PipelineConfig, data)
    assert "reference" not in data  # declared once, under train:
    assert TokenLengths.of(config.reference_config()) == TokenLengths(
        max_length=192, max_prompt_length=64
    )
