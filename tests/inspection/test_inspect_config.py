"""`prefsmith inspect -c CONFIG`: the weights are previewed with the parameters of the config's
loss terms (the params models' defaults for a loss it lacks), options override on top, and a bad
parameter stops with one line before any table is read."""

from __future__ import annotations

import json

import pytest
import yaml
from inspect_cases import TAU, hand_madpo, make_pairs, sig
from typer.testing import CliRunner

from prefsmith.flows.cli import app
from prefsmith.flows.cli_inspect import preview_params
from prefsmith.schemas.errors import ConfigDeprecation
from prefsmith.schemas.io import write_table
from prefsmith.schemas.losses import MADPOParams, UniDPOParams
from prefsmith.schemas.tables import PAIRS

CHOSEN, REJECTED = [0.5, 1.0, 3.0, 2.0, 9.0], [0.0, 0.5, 0.0, 2.5, 1.0]
MARGINS = [c - r for c, r in zip(CHOSEN, REJECTED, strict=True)]  # 0.5 0.5 3 -0.5 8
PIPELINE = {
    "prompts": {"path": "prompts.jsonl"},
    "generate": {"model": "m"},
    "score": {"kind": "rule", "rule": "length_target", "params": {"target": 5}},
}
UNIDPO = {"name": "unidpo", "params": {"eta": 2.0, "tau_good": 2.5}}
MADPO = {"name": "madpo", "weight": 0.5, "params": {"c_max": 3.0, "c_min": 0.2, "tau": 2.5}}


@pytest.fixture
def pairs(tmp_path):
    return write_table(make_pairs(CHOSEN, REJECTED), tmp_path / "pairs.parquet", PAIRS)


def run_inspect(tmp_path, pairs, config: dict | None, *options: str):
    """`prefsmith inspect` with `config` written as YAML; the statistics JSON (None on failure)."""
    args = ["inspect", str(pairs), "--no-html", "--json", str(tmp_path / "stats.json")]
    if config is not None:
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        args += ["-c", str(tmp_path / "config.yaml")]
    done = CliRunner().invoke(app, [*args, *options])
    if done.exit_code != 0:
        return None, " ".join(done.output.split())
    return json.loads((tmp_path / "stats.json").read_text()), done.output


def test_pipeline_config_terms_set_the_previewed_weights(tmp_path, pairs):
    config = PIPELINE | {
        "train": {
            "policy": "m",
            "loss": [UNIDPO, {**MADPO, "params": {**MADPO["params"], "lam": 0.4}}],
        }
    }
    stats, _ = run_inspect(tmp_path, pairs, config)
    assert stats["settings"] | {"scale": 0, "shift": 0, "method": 0} == {
        "eta": 2.0,
        "tau_good": 2.5,
        "madpo_tau": 2.5,
        "c_max": 3.0,
        "c_min": 0.2,
        "madpo_lam": 0.4,
        "scale": 0,
        "shift": 0,
        "method": 0,
    }
    expected = [hand_madpo(m, 2.5, 3.0, 0.2, 0.4) for m in MARGINS]
    assert stats["madpo"]["mean"] == pytest.approx(sum(expected) / 5, rel=1e-12)
    assert stats["w_qual"]["mean"] == pytest.approx(sum(sig(2.0 * m) for m in MARGINS) / 5)
    assert stats["c_nll"]["active_fraction"] == pytest.approx(2 / 5)  # S_w ≥ 2.5: 3.0, 9.0


def test_train_config_with_one_term_takes_defaults_for_the_other(tmp_path, pairs):
    """A bare train YAML with MADPO only (old spelling `lmbda`): Uni-DPO at the model defaults."""
    config = {"policy": "m", "loss": [{"name": "madpo", "params": {"lmbda": 0.4, "tau": 2.5}}]}
    with pytest.warns(ConfigDeprecation, match="0.3.0"):
        stats, _ = run_inspect(tmp_path, pairs, config)
    assert (stats["settings"]["madpo_lam"], stats["settings"]["madpo_tau"]) == (0.4, 2.5)
    assert stats["settings"]["eta"] == UniDPOParams().eta == 0.7
    expected = [hand_madpo(m, 2.5, 2.0, 0.5, 0.4) for m in MARGINS]
    assert stats["madpo"]["mean"] == pytest.approx(sum(expected) / 5, rel=1e-12)
    sectioned, _ = run_inspect(tmp_path, pairs, {"train": config})  # `train:` section form
    assert sectioned["settings"] == stats["settings"]


def test_no_config_or_no_train_section_previews_the_model_defaults(tmp_path, pairs):
    bare, _ = run_inspect(tmp_path, pairs, None)
    dataset_only, _ = run_inspect(tmp_path, pairs, PIPELINE)
    assert bare["settings"] == dataset_only["settings"]
    assert (bare["settings"]["madpo_tau"], bare["settings"]["c_max"]) == (TAU, 2.0)
    assert bare["madpo"]["mean"] == pytest.approx(sum(hand_madpo(m) for m in MARGINS) / 5)
    assert preview_params(None) == (UniDPOParams(), MADPOParams())


def test_options_override_the_config_and_are_range_checked(tmp_path, pairs):
    config = {"policy": "m", "loss": [UNIDPO, MADPO]}
    stats, _ = run_inspect(tmp_path, pairs, config, "--eta", "0.25", "--madpo-tau", "4.0")
    assert stats["settings"]["eta"] == 0.25 and stats["settings"]["tau_good"] == 2.5
    assert (stats["settings"]["madpo_tau"], stats["settings"]["c_max"]) == (4.0, 3.0)
    failed, output = run_inspect(tmp_path, pairs, config, "--madpo-tau", "-1")
    assert failed is None
    assert "error: invalid option: madpo.tau: Input should be greater than 0 (got -1.0)" in output


def test_a_bad_loss_parameter_stops_before_the_table_is_read(tmp_path):
    config = PIPELINE | {
        "train": {"policy": "m", "loss": [{"name": "madpo", "params": {"c_min": 1.5}}]}
    }
    failed, output = run_inspect(tmp_path, tmp_path / "missing.parquet", config)
    assert failed is None and output.count("error:") == 1
    assert "train.loss.0.madpo.params.c_min: Input should be less than 1 (got 1.5)" in output
