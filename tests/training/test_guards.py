"""Each guard stops with its own clear message."""

from __future__ import annotations

import copy

import pytest

from prefsmith.schemas.errors import StageError
from prefsmith.schemas.tables import PAIRS, PAIRS_WITH_REFERENCE
from prefsmith.training.guards import (
    check_finite_loss,
    check_reference_columns,
    check_reference_tokens,
    check_tokenizer_model,
)


@pytest.mark.parametrize("loss", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_loss_names_step_and_metrics(loss):
    with pytest.raises(StageError) as error:
        check_finite_loss(
            loss, step=7, metrics={"rewards/margins": float("nan"), "logps/chosen": -3.0}
        )
    message = str(error.value)
    assert "step 7" in message and "rewards/margins=nan" in message and "logps/chosen=-3" in message
    check_finite_loss(0.69, step=1, metrics={})  # finite: nothing happens


def test_missing_reference_columns_when_the_loss_needs_them():
    with pytest.raises(
        StageError, match=r"loss 'dpo' needs reference log-probs: run `prefsmith reference` first"
    ):
        check_reference_columns(PAIRS.names, terms=[("dpo", 1.0, {})])
    with pytest.raises(StageError, match="loss 'madpo'"):
        check_reference_columns(PAIRS.names, terms=[("simpo", 1.0, {}), ("madpo", 1.0, {})])
    check_reference_columns(PAIRS.names, terms=[("simpo", 1.0, {})])  # reference-free
    check_reference_columns(PAIRS.names, terms=[("adadpo", 1.0, {"use_ref": False})])
    check_reference_columns(PAIRS_WITH_REFERENCE.names, terms=[("dpo", 1.0, {})])


def test_reference_token_mismatch():
    with pytest.raises(StageError, match="3 of 10 pairs .* rerun `prefsmith reference`"):
        check_reference_tokens(3, total=10, example="pair x")
    check_reference_tokens(0, total=10, example="")


def test_tokenizer_larger_than_the_model_vocab(tiny_tokenizer, tiny):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(tiny.policy))
    check_tokenizer_model(tiny_tokenizer, config)  # the tiny pair matches
    small = copy.deepcopy(config)
    small.vocab_size = 100
    with pytest.raises(StageError) as error:
        check_tokenizer_model(tiny_tokenizer, small, model_name="small-model")
    message = str(error.value)
    assert "small-model" in message and "384 tokens" in message and "vocab_size is 100" in message


def test_special_ids_that_disagree_or_fall_outside(tiny_tokenizer, tiny):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(tiny.policy))
    other_eos = copy.deepcopy(config)
    other_eos.eos_token_id = 5
    with pytest.raises(StageError, match="eos_token_id is 2 but the model's config says \\[5\\]"):
        check_tokenizer_model(tiny_tokenizer, other_eos)

    class SparseTokenizer:  # ids need not be dense: a pad id can sit past len(tokenizer)
        pad_token_id, eos_token_id, bos_token_id = 5000, 2, 1

        def __len__(self):
            return 300

    with pytest.raises(StageError, match="pad_token_id 5000 is outside the model's vocab"):
        check_tokenizer_model(SparseTokenizer(), config)
    no_eos = copy.deepcopy(tiny_tokenizer)
    no_eos.eos_token = None
    with pytest.raises(StageError, match="no eos_token"):
        check_tokenizer_model(no_eos, config)
