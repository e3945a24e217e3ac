"""Per-pair weights reach every loss through the one reduction: the weighted mean
Σ w_i·ℓ_i / Σ w_i (prefsmith.training.losses.reduce_loss).

Oracles: the gradient of the weighted loss equals the weighted mean of the per-pair gradients; a
weight-0 pair gives the loss and gradient of the batch without it; a weight-2 pair those of the
batch with it twice. Checked for every registered loss (and the NLL term) on the hand-picked
pairs, then end to end: a pairs table's `weight` column through the reference pass, the examples,
the collator and the trainer's `compute_loss` on the tiny policy.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from loss_cases import PAIRS, _t, make_batch

from prefsmith.schemas.config_base import parse_config
from prefsmith.schemas.errors import InputError
from prefsmith.schemas.io import read_frame, write_table
from prefsmith.schemas.tables import PAIRS as PAIRS_SCHEMA
from prefsmith.schemas.tables import QUARANTINE, WEIGHT
from prefsmith.schemas.train_configs import ReferenceConfig, TrainConfig
from prefsmith.training.losses import LOSSES, combined_loss, reduce_loss
from prefsmith.training.pair_examples import build_examples, read_pairs
from prefsmith.training.reference import reference_pass
from prefsmith.training.stage import make_trainer, training_arguments

TERMS = [([(name, 1.0, {})], 0.0) for name in sorted(LOSSES)] + [([], 1.0)]  # + the NLL term
TERM_IDS = [*sorted(LOSSES), "nll"]
LENGTHS = {"max_length": 128, "max_prompt_length": 64}


def weighted_loss(pairs, weights, terms, nll_weight):
    """(reduced loss, d/d lw, d/d ll) of `pairs` with `weights` (None: the plain mean)."""
    batch = make_batch(pairs, weights=weights)
    lw = batch.policy_chosen_logps.detach().clone().requires_grad_(True)
    ll = batch.policy_rejected_logps.detach().clone().requires_grad_(True)
    batch = dataclasses.replace(batch, policy_chosen_logps=lw, policy_rejected_logps=ll)
    per_pair, _ = combined_loss(batch, terms=terms, nll_weight=nll_weight)
    loss = reduce_loss(per_pair, weights=None if weights is None else batch.weight)
    grad_w, grad_l = torch.autograd.grad(loss, [lw, ll], allow_unused=True, materialize_grads=True)
    return loss.detach(), grad_w, grad_l


@pytest.mark.parametrize(("terms", "nll_weight"), TERMS, ids=TERM_IDS)
def test_gradient_is_the_weighted_mean_of_per_pair_gradients(terms, nll_weight):
    weights = [0.5, 0.0, 2.5]
    _, grad_w, grad_l = weighted_loss(PAIRS, weights, terms, nll_weight)
    singles = [weighted_loss([pair], None, terms, nll_weight) for pair in PAIRS]
    share = _t(weights) / sum(weights)  # (B,) each pair's share of the mean
    torch.testing.assert_close(grad_w, share * torch.cat([g for _, g, _ in singles]))
    torch.testing.assert_close(grad_l, share * torch.cat([g for _, _, g in singles]))
    assert grad_w[1] == 0 and grad_l[1] == 0  # the weight-0 pair moves nothing


@pytest.mark.parametrize(("terms", "nll_weight"), TERMS, ids=TERM_IDS)
def test_weight_zero_drops_the_pair_and_weight_two_duplicates_it(terms, nll_weight):
    a, b, c = PAIRS
    zero = weighted_loss(PAIRS, [1.0, 0.0, 1.0], terms, nll_weight)
    without = weighted_loss([a, c], None, terms, nll_weight)
    torch.testing.assert_close(zero[0], without[0])
    torch.testing.assert_close(zero[1][[0, 2]], without[1])
    torch.testing.assert_close(zero[2][[0, 2]], without[2])
    two = weighted_loss(PAIRS, [2.0, 1.0, 1.0], terms, nll_weight)
    twice = weighted_loss([a, a, b, c], None, terms, nll_weight)
    torch.testing.assert_close(two[0], twice[0])
    torch.testing.assert_close(two[1], torch.stack([twice[1][0] + twice[1][1], *twice[1][2:]]))
    torch.testing.assert_close(two[2], torch.stack([twice[2][0] + twice[2][1], *twice[2][2:]]))


def test_an_all_zero_batch_gives_zero_and_no_gradient():
    loss, grad_w, grad_l = weighted_loss(PAIRS, [0.0, 0.0, 0.0], [("dpo", 1.0, {})], 0.0)
    assert loss.item() == 0.0 and not grad_w.any() and not grad_l.any()


@pytest.fixture
def weighted_pairs(tmp_path, pair_rows):
    """6 pairs with weights 1, 0, 2, 1, 2, 1 in a `weight` column."""
    rows = [
        dict(row, weight=w) for row, w in zip(pair_rows(6, seed=5), [1, 0, 2, 1, 2, 1], strict=True)
    ]
    return write_table(rows, tmp_path / "pairs.parquet", PAIRS_SCHEMA.append(WEIGHT))


def _trainer_loss(tiny, tokenizer, examples, config, out_dir):
    """compute_loss of the trainer on one batch of `examples`: (loss, flat parameter gradient)."""
    import datasets
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny.policy))
    args = training_arguments(config, out_dir=out_dir)
    trainer = make_trainer(
        model, tokenizer, datasets.Dataset.from_list(examples), config=config, args=args
    )
    loss = trainer.compute_loss(model, trainer.data_collator(examples))
    loss.backward()
    return loss.detach(), torch.cat([p.grad.flatten() for p in model.parameters()])


def test_the_weight_column_reaches_the_trainer_loss(tiny, tiny_tokenizer, weighted_pairs, tmp_path):
    """Through the reference pass (which keeps the column) and the trainer: weights 0 and 2 give
    the loss and gradient of the table with those pairs left out and doubled."""
    ref = parse_config(ReferenceConfig, {"model": str(tiny.policy), **LENGTHS})
    pairs_ref = reference_pass({"pairs": weighted_pairs}, config=ref, out_dir=tmp_path / "ref")
    frame = read_frame(pairs_ref.output, PAIRS_SCHEMA.append(WEIGHT))
    assert frame["weight"].to_list() == [1, 0, 2, 1, 2, 1]
    loss = [{"name": "dpo", "params": {"beta": 0.5}}, {"name": "simpo"}]  # simpo: unequal losses
    config = parse_config(TrainConfig, {"policy": str(tiny.policy), "loss": loss, **LENGTHS})
    rows, has_reference = read_pairs(pairs_ref.output, config=config)
    examples, rejected = build_examples(
        rows, tokenizer=tiny_tokenizer, config=config, pairs=pairs_ref.output, has_reference=True
    )
    assert has_reference and not rejected
    assert [e["weight"] for e in examples] == [1, 0, 2, 1, 2, 1]
    expanded = [
        dict(e, weight=1.0) for e in examples for _ in range(int(e["weight"]))
    ]  # 0 → gone, 2 → twice
    weighted = _trainer_loss(tiny, tiny_tokenizer, examples, config, tmp_path / "w")
    plain = _trainer_loss(tiny, tiny_tokenizer, expanded, config, tmp_path / "p")
    torch.testing.assert_close(weighted[0], plain[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(weighted[1], plain[1], atol=1e-6, rtol=1e-4)
    unweighted = [dict(e, weight=1.0) for e in examples]  # negative control: weights matter
    other = _trainer_loss(tiny, tiny_tokenizer, unweighted, config, tmp_path / "u")
    assert abs(other[0] - weighted[0]) > 1e-4 and (other[1] - weighted[1]).abs().max() > 1e-4


def _examples(tiny, tokenizer, path):
    loss = [{"name": "simpo"}]
    config = parse_config(TrainConfig, {"policy": str(tiny.policy), "loss": loss, **LENGTHS})
    rows, has_reference = read_pairs(path, config=config)
    return build_examples(
        rows, tokenizer=tokenizer, config=config, pairs=path, has_reference=has_reference
    )


def test_invalid_weights_are_quarantined(tiny, tiny_tokenizer, tmp_path, pair_rows):
    weights = [1.0, -1.0, float("nan"), None, float("inf"), 0.0]
    rows = [dict(row, weight=w) for row, w in zip(pair_rows(6, seed=2), weights, strict=True)]
    path = write_table(rows, tmp_path / "pairs.parquet", PAIRS_SCHEMA.append(WEIGHT))
    examples, rejected = _examples(tiny, tiny_tokenizer, path)
    assert [e["weight"] for e in examples] == [1.0, 0.0]
    assert [(r.row_ref, r.reason) for r in rejected] == [
        (rows[i]["pair_id"], "invalid_weight") for i in (1, 2, 3, 4)
    ]


def test_all_zero_weights_stop_in_one_line(tiny, tiny_tokenizer, tmp_path, pair_rows):
    rows = [dict(row, weight=0.0) for row in pair_rows(4)]
    path = write_table(rows, tmp_path / "pairs.parquet", PAIRS_SCHEMA.append(WEIGHT))
    with pytest.raises(InputError, match="every pair has weight 0") as error:
        _examples(tiny, tiny_tokenizer, path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_a_table_without_weights_weighs_every_pair_one(tiny, tiny_tokenizer, pairs_file):
    examples, _ = _examples(tiny, tiny_tokenizer, pairs_file)
    assert examples and {e["weight"] for e in examples} == {1.0}


def test_invalid_weight_quarantine_reaches_the_train_manifest(tiny, tmp_path, pair_rows):
    from prefsmith.schemas.manifest import Manifest
    from prefsmith.training.stage import train

    rows = [dict(row, weight=w) for row, w in zip(pair_rows(4), [1.0, -2.0, 1.0, 1.0], strict=True)]
    path = write_table(rows, tmp_path / "pairs.parquet", PAIRS_SCHEMA.append(WEIGHT))
    settings = {"max_steps": 1, "save_steps": 0, "loss": [{"name": "simpo"}], **LENGTHS}
    config = parse_config(TrainConfig, {"policy": str(tiny.policy), **settings})
    result = train({"pairs": path}, config=config, out_dir=tmp_path / "run")
    manifest = Manifest.read(result.manifest)
    assert (manifest.rows_in, manifest.rows_out, manifest.dropped) == (4, 3, {"invalid_weight": 1})
    quarantine = read_frame(result.quarantine, QUARANTINE)
    assert quarantine["row_ref"].to_list() == [rows[1]["pair_id"]]
