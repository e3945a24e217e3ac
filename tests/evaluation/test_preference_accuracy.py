"""Held-out implicit-reward accuracy and margin: hand-computed values, then the stage end to end."""

from __future__ import annotations

import polars as pl
import pytest

from prefsmith.evaluation.preference_accuracy import (
    MARGINS,
    heldout_accuracy,
    implicit_margins,
    join_passes,
    preference_accuracy,
)
from prefsmith.schemas.eval_configs import PolicyReferenceConfig
from prefsmith.schemas.io import read_frame, write_table
from prefsmith.schemas.manifest import Manifest
from prefsmith.schemas.tables import PAIRS
from prefsmith.schemas.train_configs import ReferenceConfig


def test_margins_and_accuracy_by_hand():
    """Pair 1: (-10 - -12) - (-20 - -19) = 2 + 1 = 3 (right);
    pair 2: (-5 - -5) - (-6 - -6) = 0 (a tie counts as wrong);
    pair 3: (-8 - -7) - (-9 - -10) = -1 - 1 = -2 (wrong).
    accuracy 1/3, mean margin (3 + 0 - 2) / 3 = 1/3."""
    m = implicit_margins([-10, -5, -8], [-20, -6, -9], [-12, -5, -7], [-19, -6, -10])
    assert m.tolist() == [3.0, 0.0, -2.0]
    summary = preference_accuracy(m)
    assert summary == {
        "n_pairs": 3,
        "accuracy": pytest.approx(1 / 3),
        "mean_margin": pytest.approx(1 / 3),
        "ties": 1,
    }
    assert preference_accuracy([]) == {
        "n_pairs": 0,
        "accuracy": None,
        "mean_margin": None,
        "ties": 0,
    }


def test_join_is_on_pair_id_not_row_order():
    policy = pl.DataFrame(
        {
            "pair_id": ["a", "b", "c"],
            "prompt_id": ["p", "q", "r"],
            "ref_logp_chosen": [-1.0, -2.0, -3.0],
            "ref_logp_rejected": [-4.0, -1.0, -3.0],
        }
    )
    reference = pl.DataFrame(
        {"pair_id": ["b", "a"], "ref_logp_chosen": [-2.5, -1.0], "ref_logp_rejected": [-1.0, -5.0]}
    )
    joined = join_passes(policy, reference)
    assert joined["pair_id"].to_list() == ["a", "b"]  # c is missing in the reference pass
    assert joined["margin"].to_list() == [-1.0, 0.5]  # a: 0 - (-4 + 5); b: (-2 + 2.5) - 0


def _pairs(path, n: int):
    rows = [
        {
            "pair_id": f"pair{i}",
            "prompt_id": f"p{i}",
            "messages": [{"role": "user", "content": "tell me about the cat"}],
            "chosen": "the cat is big",
            "rejected": "the cat sees a red bird and the dog runs fast and the cat",
            "chosen_response_id": f"p{i}-0",
            "rejected_response_id": f"p{i}-1",
            "score_chosen": 1.0,
            "score_rejected": 0.0,
            "margin": 1.0,
            "strategy": "best_vs_worst",
            "scorer": "rule",
        }
        for i in range(n)
    ]
    return write_table(rows, path, PAIRS)


def test_stage_scores_both_models_and_reconciles(tiny, tuned_policy, tmp_path):
    pairs = _pairs(tmp_path / "pairs.parquet", 3)
    reference = ReferenceConfig(model=str(tiny.policy), max_length=128, max_prompt_length=32)
    same = heldout_accuracy(
        {"pairs": pairs},
        config=PolicyReferenceConfig(policy=str(tiny.policy), reference=reference),
        out_dir=tmp_path / "same",
    )
    zero = read_frame(same.output, MARGINS)
    assert zero.height == 3 and zero["margin"].to_list() == [
        0.0,
        0.0,
        0.0,
    ]  # a model against itself
    assert Manifest.read(same.manifest).extra["summary"] == {
        "n_pairs": 3,
        "accuracy": 0.0,
        "mean_margin": 0.0,
        "ties": 3,
    }
    tuned = heldout_accuracy(
        {"pairs": pairs},
        config=PolicyReferenceConfig(policy=str(tuned_policy), reference=reference),
        out_dir=tmp_path / "tuned",
    )
    got = read_frame(tuned.output, MARGINS)
    assert (got["ref_logp_chosen"] == zero["ref_logp_chosen"]).all()  # same reference pass
    assert (got["policy_logp_chosen"] != got["ref_logp_chosen"]).all()
    expected = (got["policy_logp_chosen"] - got["ref_logp_chosen"]) - (
        got["policy_logp_rejected"] - got["ref_logp_rejected"]
    )
    assert got["margin"].to_list() == pytest.approx(expected.to_list())
    manifest = Manifest.read(tuned.manifest)
    assert (manifest.rows_in, manifest.rows_out) == (3, 3)
    assert manifest.config == {
        "policy": str(tuned_policy),
        "reference": reference.model_dump(mode="json"),
    }


def test_stage_with_no_pairs_loads_no_model(tmp_path):
    pairs = _pairs(tmp_path / "pairs.parquet", 0)
    result = heldout_accuracy(
        {"pairs": pairs},
        config=PolicyReferenceConfig(
            policy=str(tmp_path / "missing"),
            reference=ReferenceConfig(model=str(tmp_path / "missing")),
        ),
        out_dir=tmp_path,
    )
    assert read_frame(result.output, MARGINS).height == 0
    assert Manifest.read(result.manifest).extra["summary"]["accuracy"] is None
