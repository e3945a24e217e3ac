"""Token lengths are declared once in a pipeline config: reference (and KL) take train's."""

from __future__ import annotations

import pytest

from prefsmith.schemas.config_base import parse_config
from prefsmith.schemas.contracts import TokenLengths
from prefsmith.schemas.errors import ConfigError
from prefsmith.schemas.pipeline_config import PipelineConfig

TRAIN_LENGTHS = {"max_length": 2048, "max_prompt_length": 1024}


def pipeline(**sections) -> PipelineConfig:
    base = {
        "prompts": {"path": "prompts.jsonl"},
        "generate": {"model": "/models/policy"},
        "score": {"kind": "rule", "rule": "length_target"},
    }
    return parse_config(PipelineConfig, {**base, **sections})


def test_reference_omitted_takes_trains_lengths_and_the_policy():
    config = pipeline(train={"policy": "/models/policy", **TRAIN_LENGTHS})
    reference = config.reference_config()
    assert TokenLengths.of(reference) == TokenLengths(**TRAIN_LENGTHS)
    assert reference.model == "/models/policy"


def test_reference_without_lengths_takes_trains_and_keeps_its_own_keys():
    config = pipeline(
        train={"policy": "/models/policy", **TRAIN_LENGTHS},
        reference={"model": "/models/base", "dtype": "bfloat16", "token_budget": 4096},
    )
    reference = config.reference_config()
    assert (reference.max_length, reference.max_prompt_length) == (2048, 1024)
    assert (reference.model, reference.dtype, reference.token_budget) == (
        "/models/base",
        "bfloat16",
        4096,
    )


def test_train_defaults_reach_the_reference_too():
    """Train's lengths count even when they are its defaults (reference gets them, not its own)."""
    config = pipeline(train={"policy": "p"})
    assert TokenLengths.of(config.reference_config()) == TokenLengths.of(config.train)


def test_equal_lengths_on_both_sides_are_allowed():
    config = pipeline(
        train={"policy": "p", **TRAIN_LENGTHS}, reference={"model": "r", **TRAIN_LENGTHS}
    )
    assert TokenLengths.of(config.reference_config()) == TokenLengths(**TRAIN_LENGTHS)


def test_mismatched_lengths_fail_with_one_line_naming_both_fields():
    with pytest.raises(ConfigError) as error:
        pipeline(
            train={"policy": "p", **TRAIN_LENGTHS},
            reference={"model": "r", "max_length": 1024, "max_prompt_length": 1024 - 1},
        )
    message = str(error.value)
    assert "\n" not in message
    assert "reference.max_length=1024 but train.max_length=2048" in message
    assert "reference.max_prompt_length=1023 but train.max_prompt_length=1024" in message
    assert "set them once, under train:" in message


def test_one_mismatched_field_is_enough_to_fail():
    with pytest.raises(ConfigError, match=r"reference\.max_length=4096 but train\.max_length=1024"):
        pipeline(train={"policy": "p"}, reference={"model": "r", "max_length": 4096})


def test_without_train_the_reference_keeps_its_lengths():
    config = pipeline(reference={"model": "r", "max_length": 300, "max_prompt_length": 100})
    assert TokenLengths.of(config.reference_config()) == TokenLengths(
        max_length=300, max_prompt_length=100
    )
    assert pipeline().reference_config().model == "/models/policy"  # the generating model
