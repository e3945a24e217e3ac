"""TrainConfig / ReferenceConfig: one-line errors naming the field, shipped configs load."""

from __future__ import annotations

import inspect
import json

import pytest

from prefsmith.schemas.config_base import load_config, parse_config
from prefsmith.schemas.errors import ConfigError
from prefsmith.schemas.train_configs import (
    LOSS_PARAMS,
    LaunchConfig,
    LossTerm,
    ReferenceConfig,
    TrainConfig,
)
from prefsmith.training.losses import LOSSES
from prefsmith.training.stage import DEEPSPEED_DIR, deepspeed_config


def test_loss_params_mirror_the_loss_signatures():
    """schemas/ cannot import torch, so LOSS_PARAMS copies the signatures: keep them in step."""
    assert set(LOSS_PARAMS) == set(LOSSES)
    for name, fn in LOSSES.items():
        params = inspect.signature(fn).parameters.values()
        keywords = {p.name: type(p.default) for p in params if p.kind is p.KEYWORD_ONLY}
        assert set(keywords) == set(LOSS_PARAMS[name]), name
        for key, kind in keywords.items():
            assert LOSS_PARAMS[name][key] is (bool if kind is bool else float), (name, key)


def test_misspelt_loss_parameter_is_one_line_naming_the_field():
    with pytest.raises(ConfigError) as error:
        parse_config(
            TrainConfig, {"policy": "p", "loss": [{"name": "dpo", "params": {"betta": 0.1}}]}
        )
    message = str(error.value)
    assert "\n" not in message
    assert "loss.0" in message and "params.betta" in message and "beta, label_smoothing" in message


def test_wrong_kind_of_loss_parameter_and_unknown_loss():
    with pytest.raises(ConfigError, match="use_ref: loss 'adadpo' expects true/false"):
        parse_config(
            TrainConfig, {"policy": "p", "loss": [{"name": "adadpo", "params": {"use_ref": 1}}]}
        )
    with pytest.raises(ConfigError, match="loss.0.name"):
        parse_config(TrainConfig, {"policy": "p", "loss": [{"name": "dpoo"}]})


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as error:
        parse_config(
            TrainConfig, {"policy": "p", "learning_rate": -1, "bogus": 1, "deepspeed": "zero4"}
        )
    message = str(error.value)
    assert "learning_rate" in message and "bogus: unknown key" in message and "deepspeed" in message


def test_cross_field_rules():
    with pytest.raises(ConfigError, match="max_prompt_length"):
        parse_config(TrainConfig, {"policy": "p", "max_length": 64, "max_prompt_length": 64})
    with pytest.raises(ConfigError, match="each loss may appear once"):
        parse_config(TrainConfig, {"policy": "p", "loss": [{"name": "dpo"}, {"name": "dpo"}]})
    with pytest.raises(ConfigError, match="nothing to train"):
        parse_config(TrainConfig, {"policy": "p", "loss": []})
    with pytest.raises(ConfigError, match="max_prompt_length"):
        parse_config(ReferenceConfig, {"model": "m", "max_length": 32, "max_prompt_length": 40})


def test_defaults_and_terms():
    config = parse_config(TrainConfig, {"policy": "p"})
    assert config.terms() == [("dpo", 1.0, {})]
    assert config.report_to == ["none"] and config.deepspeed is None
    term = LossTerm(name="unidpo", weight=0.5, params={"beta": 2.0, "detach_w_perf": True})
    assert term.params["detach_w_perf"] is True


def test_every_field_has_a_description():
    for model in (TrainConfig, ReferenceConfig, LossTerm, LaunchConfig):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name}"


@pytest.mark.parametrize("preset", ["zero2", "zero3"])
def test_shipped_deepspeed_configs_load(preset, tmp_path):
    config = parse_config(TrainConfig, {"policy": "p", "deepspeed": preset})
    path = deepspeed_config(config.deepspeed)
    data = json.loads((DEEPSPEED_DIR / f"{preset}.json").read_text())
    assert path == str(DEEPSPEED_DIR / f"{preset}.json")
    assert data["zero_optimization"]["stage"] == int(preset[-1])
    assert "optimizer" not in data  # a torch optimizer: no DeepSpeed op compilation
    readme = (DEEPSPEED_DIR / "README.md").read_text()
    for key in data["zero_optimization"]:
        assert f"`{key}`" in readme, key  # every knob has its reason
    custom = tmp_path / "ds.json"
    custom.write_text(json.dumps(data))
    assert parse_config(TrainConfig, {"policy": "p", "deepspeed": str(custom)}).deepspeed == str(
        custom
    )


def test_yaml_config_loads(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text(
        "train:\n  policy: p\n  loss:\n    - {name: simpo, params: {beta: 2.0}}\n  max_steps: 3\n"
    )
    config = load_config(TrainConfig, path, section="train")
    assert config.terms() == [("simpo", 1.0, {"beta": 2.0})] and config.max_steps == 3
