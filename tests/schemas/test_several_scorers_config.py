"""`score:` as a list and `combine:` (prefsmith.schemas.pipeline_config, combine_config): names,
the rules of each method, which scorers built the pairs, and which one judges the evaluation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from prefsmith.schemas.pipeline_config import PipelineConfig

RULE = {"name": "exact", "kind": "rule", "rule": "length_target", "params": {"target": 5}}
RM = {"name": "rm", "kind": "reward_model", "model": "models/rm"}
RM2 = {"name": "rm2", "kind": "reward_model", "model": "models/rm2"}


def config(score, combine=None, evaluate=None) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "prompts": {"path": "p.jsonl"},
            "generate": {"model": "models/policy"},
            "score": score,
            "combine": combine,
            "evaluate": evaluate,
        }
    )


@pytest.mark.parametrize(
    ("score", "combine", "message"),
    [
        ([RULE, {**RM, "name": None}], {"method": "weighted_sum"}, "a name each"),
        ([RULE, {**RM, "name": "exact"}], {"method": "weighted_sum"}, "a name each"),
        ([RULE, RM], None, "need a combine: section"),
        ([RULE, RM], {"method": "gate", "gate": "rules"}, "unknown scorer rules"),
        ([RULE, RM, RM2], {"method": "gate", "gate": "exact"}, "name rank_by"),
        ([RULE, RM], {"method": "lexicographic"}, "needs order"),
        (RM, {"method": "single", "scorer": "rm"}, "two or more scorers"),
    ],
)
def test_refused_combinations_say_why(score, combine, message):
    with pytest.raises(ValidationError, match=message):
        config(score, combine)


def test_training_scorers_by_method():
    assert config([RULE, RM], {"method": "gate", "gate": "exact"}).training_scorers() == [
        "exact",
        "rm",
    ]
    single = config([RULE, RM, RM2], {"method": "single", "scorer": "rm"})
    assert single.training_scorers() == ["rm"]
    zero = config([RULE, RM], {"method": "weighted_sum", "weights": {"exact": 0.0}})
    assert zero.training_scorers() == ["rm"]


def test_the_judge_is_a_scorer_that_did_not_build_the_pairs():
    single = config([RM, RM2, RULE], {"method": "single", "scorer": "rm"})
    assert [name for name, _ in single.judges()] == ["rm2", "exact", "rm"]
    assert not single.judged_by_training_scorer()
    both = config([RULE, RM], {"method": "gate", "gate": "exact"})
    assert both.judges()[0][0] == "exact" and both.judged_by_training_scorer()


def test_one_scorer_judges_itself_unless_evaluate_names_another():
    alone = config(RM)
    assert [name for name, _ in alone.judges()] == ["rm"] and alone.judged_by_training_scorer()
    other = config(RM, evaluate={"scorer": RM2})
    assert [name for name, _ in other.judges()] == ["rm2", "rm"]
    assert not other.judged_by_training_scorer()
    # the same scorer under another name is still the training scorer
    renamed = config(RM, evaluate={"scorer": {**RM, "name": "judge"}})
    assert renamed.judges()[0][0] == "judge" and renamed.judged_by_training_scorer()
