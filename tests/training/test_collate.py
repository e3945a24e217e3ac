"""Collation: [chosen; rejected] rows, right padding, completion masks, normalized scores."""

from __future__ import annotations

import pytest
import torch

from prefsmith.schemas.contracts import ScoreTransform
from prefsmith.training.collate import PairCollator, missing_values, pair_example
from prefsmith.training.render import RenderedPair

EXAMPLES = [
    {
        "prompt_ids": [1, 5, 6],
        "chosen_ids": [7, 8, 2],
        "rejected_ids": [9, 2],
        "ref_chosen_logps": -3.0,
        "ref_rejected_logps": -4.0,
        "score_chosen": 1.5,
        "score_rejected": 0.5,
    },
    {
        "prompt_ids": [1, 5],
        "chosen_ids": [2],
        "rejected_ids": [10, 11, 12, 2],
        "ref_chosen_logps": -1.0,
        "ref_rejected_logps": -6.0,
        "score_chosen": 0.0,
        "score_rejected": -1.0,
    },
]


def test_concatenated_right_padded_batch():
    batch = PairCollator(pad_token_id=0)(EXAMPLES)
    assert batch["input_ids"].tolist() == [
        [1, 5, 6, 7, 8, 2],  # chosen of pair 0
        [1, 5, 2, 0, 0, 0],  # chosen of pair 1
        [1, 5, 6, 9, 2, 0],  # rejected of pair 0
        [1, 5, 10, 11, 12, 2],  # rejected of pair 1
    ]
    assert batch["attention_mask"].tolist() == [[1] * 6, [1, 1, 1, 0, 0, 0], [1] * 5 + [0], [1] * 6]
    assert batch["completion_mask"].dtype == torch.bool
    assert batch["completion_mask"].int().tolist() == [
        [0, 0, 0, 1, 1, 1],
        [0, 0, 1, 0, 0, 0],
        [0, 0, 0, 1, 1, 0],
        [0, 0, 1, 1, 1, 1],
    ]
    assert batch["ref_chosen_logps"].tolist() == [-3.0, -1.0]
    assert batch["score_rejected"].tolist() == [0.5, -1.0]
    assert batch["ref_chosen_logps"].shape == (2,)


def test_pad_to_multiple_and_optional_columns():
    bare = [{k: e[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")} for e in EXAMPLES]
    batch = PairCollator(pad_token_id=3, pad_to_multiple_of=8)(bare)
    assert batch["input_ids"].shape == (4, 8) and batch["input_ids"][1, 3:].eq(3).all()
    assert set(batch) == {"input_ids", "attention_mask", "completion_mask"}


def test_scores_are_normalized_as_the_pairs_manifest_declares():
    """Reading the declared transform is tests/schemas/test_contracts.py's; here: applying it."""
    transform = ScoreTransform(method="zscore", scale=10.0, shift=-1.0, scorer="rm")
    row = {
        "score_chosen": 0.2,
        "score_rejected": 0.05,
        "ref_logp_chosen": -3.0,
        "ref_logp_rejected": -4.0,
    }
    example = pair_example(row, RenderedPair([1], [2], [2]), transform=transform, reference=True)
    assert example["score_chosen"] == pytest.approx(1.0)  # 10 * 0.2 - 1
    assert example["score_rejected"] == pytest.approx(-0.5)  # 10 * 0.05 - 1
    assert example["ref_chosen_logps"] == -3.0 and example["length"] == 2


def test_missing_values_reasons():
    row = {
        "ref_logp_chosen": float("nan"),
        "ref_logp_rejected": -1.0,
        "score_chosen": None,
        "score_rejected": 1.0,
    }
    assert missing_values(row, reference=True, scores=True) == "missing_reference"
    assert missing_values(row, reference=False, scores=True) == "missing_score"
    assert missing_values(row, reference=False, scores=False) is None


def test_shared_prompt_layout_packs_each_pair_in_one_row():
    batch = PairCollator(pad_token_id=0, layout="shared_prompt")(EXAMPLES)
    assert batch["input_ids"].tolist() == [
        [1, 5, 6, 7, 8, 2, 9, 2],  # prompt | chosen | rejected
        [1, 5, 2, 10, 11, 12, 2, 0],  # then one pad
    ]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 5, 3, 4], [0, 1, 2, 2, 3, 4, 5, 0]]
    assert batch["completion_mask"].int().tolist() == [
        [0, 0, 0, 1, 1, 1, 1, 1],
        [0, 0, 1, 1, 1, 1, 1, 0],
    ]
    assert batch["rejected_mask"].int().tolist() == [
        [0, 0, 0, 0, 0, 0, 1, 1],
        [0, 0, 0, 1, 1, 1, 1, 0],
    ]
    # token k is predicted at k-1, except the first rejected token: at the prompt's last position
    assert batch["predictor"][0, 3:].tolist() == [2, 3, 4, 2, 6]
    assert batch["predictor"][1, 2:7].tolist() == [1, 1, 3, 4, 5]
    assert batch["ref_rejected_logps"].tolist() == [-4.0, -6.0]


def test_shared_prompt_mask_blocks_chosen_from_rejected():
    mask = PairCollator(pad_token_id=0, layout="shared_prompt")(EXAMPLES)["attention_mask"]
    assert mask.shape == (2, 1, 8, 8) and mask.dtype == torch.bool
    row = mask[0, 0].int().tolist()
    assert row[2] == [1, 1, 1, 0, 0, 0, 0, 0]  # prompt: causal
    assert row[5] == [1, 1, 1, 1, 1, 1, 0, 0]  # last chosen token: prompt + chosen
    assert row[6] == [1, 1, 1, 0, 0, 0, 1, 0]  # first rejected token: prompt + itself, no chosen
    assert row[7] == [1, 1, 1, 0, 0, 0, 1, 1]
    pad = mask[1, 0, 7].int().tolist()
    assert pad == [0] * 7 + [1]  # a pad sees only itself (no all-masked row, no NaN)
    assert not mask[1, 0, :7, 7].any()  # and nobody sees the pad
