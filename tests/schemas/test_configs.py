"""Configs stop with one line naming every bad field."""

from __future__ import annotations

import pytest

from prefsmith.schemas.config_base import load_config, parse_config
from prefsmith.schemas.data_configs import GenerateConfig, PairsConfig, ScoreConfig
from prefsmith.schemas.errors import ConfigError


def test_unknown_key_and_wrong_type_are_both_named_on_one_line():
    with pytest.raises(ConfigError) as error:
        parse_config(
            GenerateConfig, {"model": "m", "samplng": {}, "shard_size": "many"}, section="generate"
        )
    message = str(error.value)
    assert "\n" not in message
    assert "generate.samplng: unknown key" in message
    assert "generate.shard_size" in message and "'many'" in message


def test_nested_range_check():
    with pytest.raises(ConfigError, match=r"sampling\.n"):
        parse_config(GenerateConfig, {"model": "m", "sampling": {"n": 0}})


def test_cross_field_rules():
    with pytest.raises(ConfigError, match="greedy"):
        parse_config(GenerateConfig, {"model": "m", "sampling": {"temperature": 0, "n": 4}})
    with pytest.raises(ConfigError, match="servers"):
        parse_config(GenerateConfig, {"model": "m", "backend": "openai"})
    with pytest.raises(ConfigError, match="needs rule"):
        parse_config(ScoreConfig, {"kind": "rule"})


def test_yaml_errors_are_one_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("strategy: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(PairsConfig, path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(PairsConfig, tmp_path / "missing.yaml")
    path.write_text("pairs:\n  strategy: best_vs_worst\n  top_k: 1\n")
    with pytest.raises(ConfigError, match="pairs.top_k"):
        load_config(PairsConfig, path, section="pairs")


def test_config_hash_is_stable_and_sensitive():
    a = parse_config(PairsConfig, {"min_margin": 0.5})
    b = parse_config(PairsConfig, {"min_margin": 0.5})
    c = parse_config(PairsConfig, {"min_margin": 0.6})
    assert a.config_hash() == b.config_hash() != c.config_hash()
