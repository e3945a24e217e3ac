"""The typed loss hyperparameters (schemas/losses.py): ranges at their edges, paper symbols in the
descriptions, the deprecated `lmbda`, and the YAML shape of a loss term. No torch here."""

from __future__ import annotations

import math
import warnings

import pytest
import yaml
from pydantic import TypeAdapter, ValidationError

from prefsmith.flows.cli import app
from prefsmith.schemas.config_base import parse_config
from prefsmith.schemas.errors import ConfigDeprecation, ConfigError
from prefsmith.schemas.losses import (
    PARAMS_BY_LOSS,
    AdaDPOParams,
    DPOParams,
    IPOParams,
    LossTerm,
    MADPOParams,
    MADPOTerm,
    SimPOParams,
    UniDPOParams,
)
from prefsmith.schemas.train_configs import TrainConfig

# (model, field, refused values, accepted values): each range at its edges.
RANGES = [
    (DPOParams, "beta", [0.0, -0.1, math.inf, math.nan], [1e-6, 5.0]),
    (DPOParams, "label_smoothing", [-0.01, 0.5, 0.7], [0.0, 0.49]),
    (IPOParams, "beta", [0.0], [0.01]),
    (SimPOParams, "beta", [0.0], [10.0]),
    (SimPOParams, "gamma_beta_ratio", [-0.1], [0.0, 1.6]),
    (UniDPOParams, "beta", [0.0], [0.1]),
    (UniDPOParams, "eta", [0.0, -1.0], [0.01, 20.0]),
    (UniDPOParams, "gamma", [-1.0], [0.0, 5.0]),
    (UniDPOParams, "lam", [-0.001], [0.0, 0.2]),
    (UniDPOParams, "tau_good", [math.nan], [-2.0, 8.0]),  # score scale: any finite value
    (UniDPOParams, "tau_ref", [math.inf], [-1.0, 2.0]),
    (MADPOParams, "beta", [0.0], [0.5]),
    (MADPOParams, "c_max", [1.0, 0.9], [1.0001, 5.0]),
    (MADPOParams, "c_min", [0.0, 1.0, 1.2, -0.5], [0.0001, 0.9999]),
    (MADPOParams, "lam", [0.0], [0.1]),
    (MADPOParams, "tau", [0.0, -1.0], [0.5]),
    (AdaDPOParams, "beta", [0.0], [0.3]),
    (AdaDPOParams, "clip", [1.0, 0.5], [1.0001, 100.0]),
]

# The paper symbol each field's description starts with ("β: ..."); flags have none.
SYMBOLS = {
    "beta": "β",
    "label_smoothing": "ε",
    "gamma_beta_ratio": "γ/β",
    "eta": "η",
    "tau_ref": "τ_ref",
    "gamma": "γ",
    "lam": "λ",
    "tau_good": "τ_good",
    "c_max": "c_max",
    "c_min": "c_min",
    "tau": "τ",
    "clip": "C",
}
FLAGS = {"length_normalize", "detach_w_perf", "per_token", "use_ref"}


@pytest.mark.parametrize(("model", "field", "refused", "accepted"), RANGES)
def test_ranges_at_their_edges(model, field, refused, accepted):
    for value in refused:
        with pytest.raises(ValidationError) as error:
            model(**{field: value})
        assert [item["loc"] for item in error.value.errors()] == [(field,)], value
    for value in accepted:
        assert getattr(model(**{field: value}), field) == value


def test_ranges_hold_on_assignment_too():
    params = MADPOParams()
    params.c_min = 0.25
    with pytest.raises(ValidationError, match="less than 1"):
        params.c_min = 1.0
    assert params.c_min == 0.25


def test_numbers_and_flags_are_not_mixed_up():
    """YAML `true` is no β, and `1` or "yes" is no flag: both are refused, not coerced."""
    with pytest.raises(ValidationError, match="expects a number, not true/false"):
        DPOParams(beta=True)
    for value in (1, "yes", "true"):
        with pytest.raises(ValidationError, match="valid boolean"):
            AdaDPOParams(use_ref=value)
    assert DPOParams(beta=1).beta == 1.0 and isinstance(DPOParams(beta=1).beta, float)


def test_every_field_names_its_paper_symbol():
    for name, model in PARAMS_BY_LOSS.items():
        assert model.__doc__ and "arXiv" in model.__doc__, name
        for field, info in model.model_fields.items():
            if field in FLAGS:
                assert info.description, (name, field)
            else:
                assert info.description.startswith(f"{SYMBOLS[field]}: "), (name, field)


def test_madpo_lmbda_is_read_as_lam_with_a_deprecation_warning():
    with pytest.warns(ConfigDeprecation, match=r"removed in prefsmith 0\.3\.0"):
        params = MADPOParams.model_validate({"lmbda": 0.5})
    assert params.lam == 0.5 and params.model_dump() == MADPOParams(lam=0.5).model_dump()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new spelling warns about nothing
        assert MADPOParams(lam=0.5) == params
    with pytest.warns(ConfigDeprecation), pytest.raises(ValidationError, match="λ is given twice"):
        MADPOParams.model_validate({"lmbda": 0.5, "lam": 1.0})
    with pytest.warns(ConfigDeprecation), pytest.raises(ValidationError, match="greater than 0"):
        MADPOParams.model_validate({"lmbda": -1.0})  # the old spelling is range-checked too


def test_a_loss_term_keeps_its_yaml_shape():
    """`loss: [{name, weight, params}]` in, the same shape out; the name picks the params model."""
    text = "- {name: madpo, weight: 0.5, params: {beta: 0.2, c_max: 3.0}}\n- {name: dpo}\n"
    terms = TypeAdapter(list[LossTerm]).validate_python(yaml.safe_load(text))
    assert terms[0] == MADPOTerm(weight=0.5, params=MADPOParams(beta=0.2, c_max=3.0))
    assert type(terms[1].params) is DPOParams and terms[1].weight == 1.0
    dumped = TypeAdapter(list[LossTerm]).dump_python(terms)
    assert dumped[0] == {
        "name": "madpo",
        "weight": 0.5,
        "params": {"beta": 0.2, "c_max": 3.0, "c_min": 0.5, "lam": 1.0, "tau": math.log(999.0)},
    }
    config = parse_config(TrainConfig, {"policy": "p", "loss": dumped})
    assert config.loss == terms  # a dumped config loads back to the same terms


def test_a_params_key_of_another_loss_is_refused():
    """Uni-DPO's η is no MADPO parameter: the term's name decides which keys are known."""
    with pytest.raises(ConfigError, match=r"loss\.0\.madpo\.params\.eta: unknown parameter"):
        parse_config(
            TrainConfig, {"policy": "p", "loss": [{"name": "madpo", "params": {"eta": 1}}]}
        )


def test_prefsmith_validate_stops_on_an_out_of_range_loss_parameter(tmp_path):
    from typer.testing import CliRunner

    pipeline = {
        "prompts": {"path": "prompts.jsonl"},
        "generate": {"model": "m"},
        "score": {"kind": "rule", "rule": "length_target", "params": {"target": 5}},
        "train": {"policy": "m", "loss": [{"name": "madpo", "params": {"c_max": 0.8}}]},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(pipeline))
    done = CliRunner().invoke(app, ["validate", str(path), "--schema-only"])  # no files here
    assert done.exit_code == 2
    assert "train.loss.0.madpo.params.c_max: Input should be greater than 1 (got 0.8)" in (
        " ".join(done.output.split())
    )
    pipeline["train"]["loss"][0]["params"]["c_max"] = 1.5
    path.write_text(yaml.safe_dump(pipeline))
    assert CliRunner().invoke(app, ["validate", str(path), "--schema-only"]).exit_code == 0
