"""What each round samples with, trains from and measures against (prefsmith.flows.rounds), and
the config rules of `rounds:`; no model runs here."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from prefsmith.flows.rounds import round_folder, round_generator, round_policy, round_reference
from prefsmith.schemas.pipeline_config import PipelineConfig


def config(rounds: dict | None = None, *, train: bool = True, reference: dict | None = None):
    data = {
        "prompts": {"path": "prompts.jsonl"},
        "generate": {"model": "models/base", "revision": "v1", "sampling": {"n": 2}},
        "score": {"kind": "rule", "rule": "length_target", "params": {"target": 5}},
        "train": {"policy": "models/base", "max_length": 96, "max_prompt_length": 48}
        if train
        else None,
        "reference": reference,
        "rounds": rounds,
    }
    return PipelineConfig.model_validate(data)


def test_round_one_samples_with_the_base_and_later_rounds_with_the_parent_checkpoint():
    cfg = config({"count": 3})
    assert round_generator(cfg, None) is cfg.generate
    later = round_generator(cfg, "runs/b/round-1/checkpoint/final")
    assert later.model == "runs/b/round-1/checkpoint/final"
    # the base's declared revision must not be stamped on the checkpoint's samples
    assert later.revision is None and cfg.generate.revision == "v1"
    assert later.sampling == cfg.generate.sampling


def test_reference_is_the_base_unless_previous_is_asked():
    base = config({"count": 2}, reference={"model": "models/ref"})
    assert round_reference(base, "round-1/final").model == "models/ref"
    previous = config({"count": 2, "reference": "previous"}, reference={"model": "models/ref"})
    assert round_reference(previous, None).model == "models/ref"  # round 1: no previous yet
    got = round_reference(previous, "round-1/final")
    assert (got.model, got.revision, got.max_length) == ("round-1/final", None, 96)


def test_policy_init_previous_or_base():
    assert round_policy(config({"count": 2}), "round-1/final") == "round-1/final"
    assert round_policy(config({"count": 2}), None) is None
    assert round_policy(config({"count": 2, "policy_init": "base"}), "round-1/final") is None


def test_rounds_need_a_train_section_and_a_sane_count():
    with pytest.raises(ValidationError, match="add a train: section"):
        config({"count": 2}, train=False)
    with pytest.raises(ValidationError, match="count"):
        config({"count": 0})
    with pytest.raises(ValidationError, match="reference"):
        config({"count": 2, "reference": "latest"})


def test_round_folders():
    assert round_folder("runs/b/x", 2).as_posix() == "runs/b/x/round-2"
