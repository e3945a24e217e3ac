"""Packed pairs: several `[prompt | chosen | rejected]` blocks in one row, block-diagonal.

Oracle: each sequence scored alone (the concatenated layout, plain causal attention). Packing
must give the same log-probs and gradients, use fewer rows and fewer pads, and a pair's values
must not move when another pair of its row changes.
"""

from __future__ import annotations

import pytest
import torch

from prefsmith.schemas.config_base import parse_config
from prefsmith.schemas.io import write_table
from prefsmith.schemas.tables import PAIRS
from prefsmith.schemas.train_configs import TrainConfig
from prefsmith.training.collate import PairCollator, pack_rows, shared_prompt_mask
from prefsmith.training.logprobs import pair_logps
from prefsmith.training.pair_examples import build_examples, read_pairs
from prefsmith.training.policy import load_policy


def test_first_fit_decreasing_fills_rows_within_capacity():
    assert pack_rows([5, 3, 3, 2, 7], capacity=None) == [[4], [0, 3], [1, 2]]
    assert pack_rows([5, 3, 3, 2, 7], capacity=10) == [[4, 1], [0, 2, 3]]
    lengths = [17, 3, 9, 30, 12, 5, 5, 21, 8, 1]
    rows = pack_rows(lengths, capacity=32)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 32 for row in rows)
    assert pack_rows([40, 3], capacity=32) == [[0], [1]]  # a longer pair gets its own row


@pytest.fixture(scope="module")
def model_and_examples(tiny, tmp_path_factory, pair_rows):
    folder = tmp_path_factory.mktemp("packing")
    pairs = write_table(pair_rows(12, seed=3), folder / "pairs.parquet", PAIRS)
    config = parse_config(
        TrainConfig,
        {"policy": str(tiny.policy), "max_length": 128, "max_prompt_length": 64,
         "loss": [{"name": "simpo"}], "pair_layout": "packed"},
    )  # fmt: skip
    rows, has_reference = read_pairs(pairs, config=config)
    tokenizer, model = load_policy(config)
    examples, _ = build_examples(
        rows, tokenizer=tokenizer, config=config, pairs=pairs, has_reference=has_reference
    )
    return model.eval(), examples, tokenizer.pad_token_id


def _logps(model, examples, pad, layout, **kwargs):
    batch = PairCollator(pad_token_id=pad, layout=layout, **kwargs)(examples)
    return pair_logps(model, batch, chunk_tokens=64), batch


def test_packed_logps_and_gradients_equal_each_sequence_alone(model_and_examples):
    model, examples, pad = model_and_examples
    grads = {}
    for layout, kwargs in (("concatenated", {}), ("packed", {"pack_tokens": 96})):
        model.zero_grad()
        (logps, tokens), batch = _logps(model, examples, pad, layout, **kwargs)
        logps.sum().backward()
        grads[layout] = (logps.detach(), tokens, batch)
        grads[layout + "/grad"] = torch.cat([p.grad.flatten() for p in model.parameters()])
    alone, packed = grads["concatenated"], grads["packed"]
    assert torch.allclose(packed[0], alone[0], atol=1e-4, rtol=1e-5)
    assert torch.equal(packed[1], alone[1])
    assert torch.allclose(grads["packed/grad"], grads["concatenated/grad"], atol=1e-4, rtol=1e-4)
    rows, pads = packed[2]["input_ids"].shape[0], int((packed[2]["pair_index"] < 0).sum())
    shared = PairCollator(pad_token_id=pad, layout="shared_prompt")(examples)
    assert rows < len(examples) and pads < int((shared["pair_index"] < 0).sum())


def test_a_pair_never_sees_another_pair_of_its_row(model_and_examples):
    model, examples, pad = model_and_examples
    with torch.no_grad():
        (before, _), batch = _logps(model, examples, pad, "packed", pack_tokens=96)
        row = next(
            r
            for r in range(batch["pair_index"].shape[0])
            if len(set(batch["pair_index"][r].tolist()) - {-1}) > 1
        )
        first, *others = [i for i in dict.fromkeys(batch["pair_index"][row].tolist()) if i >= 0]
        changed = [dict(e) for e in examples]
        changed[first]["chosen_ids"] = list(reversed(changed[first]["chosen_ids"]))
        (after, _), _ = _logps(model, changed, pad, "packed", pack_tokens=96)
        n = len(examples)
        for i in others:
            assert after[i] == pytest.approx(float(before[i]), abs=1e-5)
            assert after[n + i] == pytest.approx(float(before[n + i]), abs=1e-5)
        assert abs(float(after[first] - before[first])) > 1e-3  # the changed pair did move
        # negative control: without the block-diagonal term, pairs of a row leak into each other
        leaky = dict(batch, attention_mask=shared_prompt_mask(_segments(batch)))
        leaked, _ = pair_logps(model, leaky, chunk_tokens=64)
        assert max(abs(float(leaked[i] - before[i])) for i in others) > 1e-3


def _segments(batch):
    """Segment ids back from a packed batch's masks (0 prompt, 1 chosen, 2 rejected, 3 pad)."""
    segments = torch.zeros_like(batch["input_ids"])
    segments[batch["completion_mask"]] = 1
    segments[batch["rejected_mask"]] = 2
    segments[batch["pair_index"] < 0] = 3
    return segments


def test_training_on_packed_rows_reaches_the_unpacked_parameters(tiny, tmp_path, pair_rows):
    from safetensors.torch import load_file

    from prefsmith.training.stage import train

    pairs = write_table(pair_rows(16, seed=4), tmp_path / "pairs.parquet", PAIRS)
    finals = {}
    for layout in ("shared_prompt", "packed"):
        config = parse_config(
            TrainConfig,
            {"policy": str(tiny.policy), "max_length": 128, "max_prompt_length": 64,
             "loss": [{"name": "simpo"}], "pair_layout": layout, "pack_tokens": 128,
             "max_steps": 4, "learning_rate": 1e-3, "lr_scheduler_type": "constant",
             "warmup_ratio": 0.0, "save_steps": 0, "per_device_train_batch_size": 8},
        )  # fmt: skip
        result = train({"pairs": pairs}, config=config, out_dir=tmp_path / layout)
        finals[layout] = load_file(str(result.output / "model.safetensors"))
    start = load_file(str(tiny.policy / "model.safetensors"))
    a, b = finals["shared_prompt"], finals["packed"]
    assert max((a[k] - start[k]).abs().max().item() for k in a) > 1e-3  # it trained
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4
