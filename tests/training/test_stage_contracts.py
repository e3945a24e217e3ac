"""The typed cross-stage contracts end to end: the pairs stage's score transform reaches the
trainer's examples through the reference pass with its values, and the trainer refuses reference
log-probs computed with other lengths than its own."""

from __future__ import annotations

import numpy as np
import pytest

from prefsmith.curation.pairs import build_pairs
from prefsmith.inspection.inspect import inspect_pairs
from prefsmith.schemas.config_base import parse_config
from prefsmith.schemas.contracts import TokenLengths
from prefsmith.schemas.data_configs import PairsConfig
from prefsmith.schemas.errors import ConfigError
from prefsmith.schemas.io import write_table
from prefsmith.schemas.manifest import Manifest
from prefsmith.schemas.tables import PROMPTS, RESPONSES, SCORES
from prefsmith.schemas.train_configs import ReferenceConfig, TrainConfig
from prefsmith.training.pair_examples import build_examples, read_pairs
from prefsmith.training.reference import reference_pass
from prefsmith.training.stage import train

LENGTHS = {"max_length": 128, "max_prompt_length": 64}
# prompt k has three answers scored 0.05 + 0.01 k + (0, 0.04, 0.1): ArmoRM-like raw scale
RAW = {f"p{k}": [0.05 + 0.01 * k + d for d in (0.0, 0.04, 0.1)] for k in range(4)}
ANSWERS = ("no", "maybe so", "yes it is")


def write_inputs(root) -> dict:
    prompts = [
        {"prompt_id": p, "messages": [{"role": "user", "content": f"is {p} red?"}]} for p in RAW
    ]
    responses, scores = [], []
    for p, values in RAW.items():
        for i, (answer, score) in enumerate(zip(ANSWERS, values, strict=True)):
            rid = f"{p}-{i}"
            responses.append(
                {"prompt_id": p, "response_id": rid, "sample_idx": i, "response": answer}
                | {"n_tokens": i + 1, "finish_reason": "stop", "generator": "g"}
                | {"gen_config_hash": "h"}
            )
            scores.append(
                {"response_id": rid, "prompt_id": p, "scorer": "rm", "score": score}
                | {"objectives": [], "n_tokens": i + 1}
            )
    prompts = [p | {"source": "test", "metadata": "{}"} for p in prompts]
    return {
        "prompts": write_table(prompts, root / "prompts.parquet", PROMPTS),
        "responses": write_table(responses, root / "responses.parquet", RESPONSES),
        "scores": write_table(scores, root / "scores.parquet", SCORES),
    }


@pytest.fixture
def built(tiny, tmp_path):
    """pairs (zscore over the 12 raw scores) and pairs_ref (the tiny policy, LENGTHS)."""
    config = PairsConfig(normalization={"method": "zscore"})
    pairs = build_pairs(write_inputs(tmp_path), config=config, out_dir=tmp_path / "pairs")
    ref_config = parse_config(ReferenceConfig, {"model": str(tiny.policy), **LENGTHS})
    pairs_ref = reference_pass({"pairs": pairs.output}, config=ref_config, out_dir=tmp_path / "ref")
    return pairs.output, pairs_ref.output


def expected_transform() -> tuple[float, float]:
    values = np.array([v for row in RAW.values() for v in row])
    return 1.0 / values.std(), -values.mean() / values.std()


def test_transform_round_trips_pairs_reference_trainer(tiny, built):
    from transformers import AutoTokenizer

    pairs, pairs_ref = built
    scale, shift = expected_transform()
    declared = Manifest.read(pairs.parent / "pairs.manifest.json").score_transform
    carried = Manifest.read(pairs_ref.parent / "pairs_ref.manifest.json").score_transform
    assert declared == carried and (declared.method, declared.scorer) == ("zscore", "rm")
    assert (carried.scale, carried.shift) == pytest.approx((scale, shift), rel=1e-12)
    config = parse_config(
        TrainConfig, {"policy": str(tiny.policy), "loss": [{"name": "madpo"}], **LENGTHS}
    )
    rows, has_reference = read_pairs(pairs_ref, config=config)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny.policy))
    examples, rejected = build_examples(
        rows, tokenizer=tokenizer, config=config, pairs=pairs_ref, has_reference=has_reference
    )
    assert has_reference and not rejected and len(examples) == len(RAW) == len(rows)
    for row, example in zip(rows, examples, strict=True):  # best_vs_worst: +0.1 vs +0.0
        assert example["score_chosen"] == pytest.approx(scale * row["score_chosen"] + shift)
        assert example["score_rejected"] == pytest.approx(scale * row["score_rejected"] + shift)
    margins = [e["score_chosen"] - e["score_rejected"] for e in examples]
    assert margins == pytest.approx([0.1 * scale] * len(RAW))  # normalized, not raw 0.1


def test_inspect_reads_the_same_transform(built):
    pairs, _ = built
    settings = inspect_pairs(pairs).stats["settings"]
    assert (settings["scale"], settings["shift"]) == pytest.approx(expected_transform())
    assert settings["method"] == "zscore"


def test_the_trainer_refuses_reference_log_probs_of_other_lengths(tiny, built, tmp_path):
    _, pairs_ref = built
    assert Manifest.read(pairs_ref.parent / "pairs_ref.manifest.json").lengths == TokenLengths(
        **LENGTHS
    )
    config = parse_config(
        TrainConfig, {"policy": str(tiny.policy), "max_length": 256, "max_prompt_length": 64}
    )
    with pytest.raises(ConfigError) as error:
        train({"pairs": pairs_ref}, config=config, out_dir=tmp_path / "run")
    message = str(error.value)
    assert "\n" not in message
    assert "computed with max_length=128, max_prompt_length=64" in message
    assert "train has max_length=256, max_prompt_length=64" in message
    assert not (tmp_path / "run" / "final").exists()
