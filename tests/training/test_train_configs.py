"""TrainConfig / ReferenceConfig: one-line errors naming the field, shipped configs load."""

from __future__ import annotations

import inspect
import json

import pytest

from prefsmith.schemas.config_base import load_config, parse_config
from prefsmith.schemas.errors import ConfigDeprecation, ConfigError
from prefsmith.schemas.losses import (
    PARAMS_BY_LOSS,
    DPOTerm,
    MADPOParams,
    MADPOTerm,
    SimPOParams,
    UniDPOParams,
    UniDPOTerm,
)
from prefsmith.schemas.train_configs import LaunchConfig, ReferenceConfig, TrainConfig
from prefsmith.training.losses import LOSSES
from prefsmith.training.stage import DEEPSPEED_DIR, deepspeed_config


def test_loss_function_defaults_are_the_params_models_defaults():
    """schemas/ cannot import torch: each params model restates its loss's keyword defaults.
    Same registry names, same keyword names, same default values (type included)."""
    assert set(PARAMS_BY_LOSS) == set(LOSSES)
    for name, fn in LOSSES.items():
        signature = inspect.signature(fn).parameters.values()
        keywords = {p.name: p.default for p in signature if p.kind is p.KEYWORD_ONLY}
        model_defaults = PARAMS_BY_LOSS[name]().model_dump()
        assert list(keywords) == list(model_defaults), name  # same names, same order
        for key, default in keywords.items():
            assert model_defaults[key] == default, (name, key)
            assert type(model_defaults[key]) is type(default), (name, key)


def test_misspelt_loss_parameter_is_one_line_naming_the_field():
    with pytest.raises(ConfigError) as error:
        parse_config(
            TrainConfig, {"policy": "p", "loss": [{"name": "dpo", "params": {"betta": 0.1}}]}
        )
    message = str(error.value)
    assert "\n" not in message
    assert "loss.0.dpo.params.betta: unknown parameter (known: beta, label_smoothing)" in message


def test_wrong_kind_or_range_of_loss_parameter_and_unknown_loss():
    """Every problem at once, each under the path of its field, before any model loads."""
    with pytest.raises(ConfigError) as error:
        parse_config(
            TrainConfig,
            {
                "policy": "p",
                "loss": [
                    {"name": "adadpo", "params": {"use_ref": 1, "clip": 1.0}},
                    {"name": "madpo", "params": {"c_min": 1.5, "beta": True}},
                ],
            },
            section="train",
        )
    message = str(error.value)
    assert "train.loss.0.adadpo.params.use_ref: Input should be a valid boolean (got 1)" in message
    assert "train.loss.0.adadpo.params.clip: Input should be greater than 1 (got 1.0)" in message
    assert "train.loss.1.madpo.params.c_min: Input should be less than 1 (got 1.5)" in message
    assert "train.loss.1.madpo.params.beta" in message and "not true/false" in message
    with pytest.raises(ConfigError, match=r"loss\.0: Input tag 'dpoo' found using 'name'.*'dpo'"):
        parse_config(TrainConfig, {"policy": "p", "loss": [{"name": "dpoo"}]})


def test_old_madpo_lmbda_is_read_as_lam_with_a_deprecation_warning(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("policy: p\nloss:\n  - {name: madpo, params: {lmbda: 2.5, tau: 3.0}}\n")
    with pytest.warns(ConfigDeprecation, match=r"`lmbda`.*removed in prefsmith 0\.3\.0.*`lam`"):
        config = load_config(TrainConfig, path)
    assert config.loss_params("madpo") == MADPOParams(lam=2.5, tau=3.0)
    assert config.terms()[0][2]["lam"] == 2.5 and "lmbda" not in config.terms()[0][2]
    with pytest.warns(ConfigDeprecation), pytest.raises(ConfigError, match="λ is given twice"):
        parse_config(
            TrainConfig,
            {"policy": "p", "loss": [{"name": "madpo", "params": {"lmbda": 2.5, "lam": 1.0}}]},
        )


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
    """terms() spells every hyperparameter out: the set ones, the rest at the model defaults."""
    config = parse_config(TrainConfig, {"policy": "p"})
    assert config.loss == [DPOTerm()]
    assert config.terms() == [("dpo", 1.0, {"beta": 0.1, "label_smoothing": 0.0})]
    assert config.report_to == ["none"] and config.deepspeed is None
    two = parse_config(
        TrainConfig,
        {
            "policy": "p",
            "loss": [
                {"name": "unidpo", "weight": 0.5, "params": {"eta": 2.0, "detach_w_perf": True}},
                {"name": "madpo", "params": {"c_max": 3.0}},
            ],
        },
    )
    assert two.loss == [
        UniDPOTerm(weight=0.5, params=UniDPOParams(eta=2.0, detach_w_perf=True)),
        MADPOTerm(params=MADPOParams(c_max=3.0)),
    ]
    assert two.terms()[0] == (
        "unidpo",
        0.5,
        {
            "beta": 2.0,
            "eta": 2.0,
            "tau_ref": 1.0,
            "gamma": 3.0,
            "lam": 0.001,
            "tau_good": 3.2,
            "detach_w_perf": True,
        },
    )
    assert two.loss_params("madpo").c_max == 3.0 and two.loss_params("dpo") is None


def test_every_field_has_a_description():
    for model in (TrainConfig, ReferenceConfig, LaunchConfig, DPOTerm, MADPOTerm):
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
    assert config.loss_params("simpo") == SimPOParams(beta=2.0) and config.max_steps == 3
    assert config.terms() == [("simpo", 1.0, {"beta": 2.0, "gamma_beta_ratio": 0.5})]
