"""The score stage: join on ids, quarantine reasons, counts that reconcile, resume and staleness."""

from __future__ import annotations

import math

import armorm_fixture as fx  # shared test helper (tests/ is on sys.path: tests/conftest.py)
import polars as pl
import pytest
import torch

from prefsmith.schemas.data_configs import ScoreConfig
from prefsmith.schemas.errors import ConfigError
from prefsmith.schemas.io import read_frame, shard_files
from prefsmith.schemas.manifest import Manifest
from prefsmith.schemas.tables import QUARANTINE, RESPONSES, SCORES
from prefsmith.scoring import stage as stage_module
from prefsmith.scoring.rules import register_rule
from prefsmith.scoring.stage import score

RECORDS = [
    {"prompt": "tell me about the dog", "answer": "4"},
    {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "count to four"},
        ]
    },
    {"prompt": "what color is the moon ?", "answer": "blue"},
]


def _inputs(tmp_path, *, orphan: bool = True):
    """3 prompts × 3 responses (shuffled), plus one response whose prompt_id is unknown."""
    prompts, ids = fx.write_prompts(RECORDS, tmp_path / "in")
    pairs = [
        (pid, fx.words(3 + 11 * k + i, seed=10 * i + k))
        for i, pid in enumerate(ids)
        for k in range(3)
    ]
    if orphan:
        pairs.append(("0" * 16, "a response to nothing"))
    responses = fx.write_responses(pairs, tmp_path / "in" / "responses.parquet")
    return responses, prompts, ids, pairs


def _direct_scores(tiny, ids, pairs) -> dict[tuple[str, str], tuple[float, int]]:
    """Oracle: each (prompt_id, text) scored alone with transformers, prompts looked up by id."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny.reward_model))
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny.reward_model)).eval()
    messages = {
        ids[0]: [{"role": "user", "content": RECORDS[0]["prompt"]}],
        ids[1]: RECORDS[1]["messages"],
        ids[2]: [{"role": "user", "content": RECORDS[2]["prompt"]}],
    }
    out = {}
    for pid, text in pairs:
        if pid not in messages:
            continue
        chat = [*messages[pid], {"role": "assistant", "content": text}]
        ids_ = tokenizer(
            tokenizer.apply_chat_template(chat, tokenize=False), add_special_tokens=False
        ).input_ids
        with torch.inference_mode():
            out[(pid, text)] = (
                float(model(input_ids=torch.tensor([ids_])).logits[0, 0]),
                len(ids_),
            )
    return out


def test_scores_join_on_ids_and_match_direct_scores(tiny, tmp_path):
    responses, prompts, ids, pairs = _inputs(tmp_path)
    config = ScoreConfig(model=str(tiny.reward_model), name="tiny-rm", revision="v1", shard_size=4)
    result = score(
        {"responses": responses, "prompts": prompts}, config=config, out_dir=tmp_path / "out"
    )
    scores = read_frame(result.output, SCORES)
    texts = read_frame(responses, RESPONSES).select(
        "response_id", "response", pl.col("n_tokens").alias("response_tokens")
    )
    expected = _direct_scores(tiny, ids, pairs)
    joined = scores.join(texts, on="response_id")
    assert joined.height == 9 and set(scores["scorer"]) == {"tiny-rm@v1"}
    for row in joined.iter_rows(named=True):
        value, rm_tokens = expected[(row["prompt_id"], row["response"])]
        assert row["score"] == pytest.approx(value, abs=1e-5)
        assert row["objectives"] == []
        # one n_tokens meaning: the response's own tokens, not the prompt + response the RM saw
        assert row["n_tokens"] == row["response_tokens"] and row["n_tokens"] < rm_tokens
    assert scores["response_id"].to_list() == sorted(scores["response_id"].to_list())
    quarantine = read_frame(result.quarantine, QUARANTINE)
    assert quarantine.select("reason", "row_ref").rows() == [("unknown_prompt", "0" * 16 + "-0")]
    manifest = Manifest.read(result.manifest)
    assert (manifest.unit, manifest.rows_in, manifest.rows_out) == ("response", 10, 9)
    assert manifest.dropped == {"unknown_prompt": 1} and manifest.extra["shards"] == 3
    assert result.manifest == tmp_path / "out" / "scores.manifest.json"
    assert result.quarantine == tmp_path / "out" / "scores.quarantine.parquet"


def _nan_for_short(prompt_messages, response, params):
    return math.nan if len(response.split()) < 10 else float(len(response.split()))


register_rule("test_nan_for_short")(_nan_for_short)


def test_non_finite_scores_are_quarantined_and_counts_reconcile(tmp_path):
    responses, prompts, _, pairs = _inputs(tmp_path)
    config = ScoreConfig(kind="rule", rule="test_nan_for_short", shard_size=4)
    result = score(
        {"responses": responses, "prompts": prompts}, config=config, out_dir=tmp_path / "out"
    )
    n_short = sum(1 for pid, text in pairs[:9] if len(text.split()) < 10)
    assert 0 < n_short < 9
    manifest = Manifest.read(result.manifest)
    assert manifest.dropped == {"non_finite_score": n_short, "unknown_prompt": 1}
    assert manifest.rows_out == 9 - n_short == read_frame(result.output, SCORES).height
    scores = read_frame(result.output, SCORES)
    assert scores["score"].is_finite().all() and set(scores["scorer"]) == {"test_nan_for_short"}


def test_rule_row_errors_are_quarantined(tmp_path):
    responses, prompts, _, _ = _inputs(tmp_path, orphan=False)
    config = ScoreConfig(kind="rule", rule="exact_match", shard_size=2)
    result = score(
        {"responses": responses, "prompts": prompts}, config=config, out_dir=tmp_path / "out"
    )
    manifest = Manifest.read(result.manifest)
    assert (manifest.rows_out, manifest.dropped) == (
        6,
        {"missing_reference": 3},
    )  # prompt 2 has no answer


def _snapshot(result) -> tuple[pl.DataFrame, pl.DataFrame]:
    return (
        read_frame(result.output, SCORES).sort("response_id"),
        read_frame(result.quarantine, QUARANTINE).sort("row_ref"),
    )


def test_resume_redoes_only_missing_shards(tiny, tmp_path, monkeypatch):
    responses, prompts, _, _ = _inputs(tmp_path)
    config = ScoreConfig(model=str(tiny.reward_model), shard_size=3)
    out = tmp_path / "out"
    first = score({"responses": responses, "prompts": prompts}, config=config, out_dir=out)
    before = _snapshot(first)
    orphan_shard = next(
        p for p in shard_files(out / "scores.quarantine") if read_frame(p, QUARANTINE).height
    )
    (out / "scores" / orphan_shard.name).unlink()  # the shard that holds the unknown_prompt row
    # the plan still lists the deleted shard, so the reader would refuse the folder: glob it
    kept = sorted((out / "scores").glob("shard-*.parquet"))
    other = next(p for p in kept if p.name != orphan_shard.name)
    other.unlink()
    second = score({"responses": responses, "prompts": prompts}, config=config, out_dir=out)
    manifest = Manifest.read(second.manifest)
    assert manifest.extra["shards"] == 4 and manifest.extra["shards_skipped"] == 2
    assert (manifest.rows_in, manifest.rows_out, manifest.dropped) == (10, 9, {"unknown_prompt": 1})
    after = _snapshot(second)
    assert after[0].drop("score").equals(before[0].drop("score"))
    assert after[0]["score"].to_list() == pytest.approx(before[0]["score"].to_list(), abs=1e-6)
    assert after[1].equals(before[1])

    def no_model(config):
        raise AssertionError("a fully resumed run must not load the scorer")

    monkeypatch.setattr(stage_module, "make_scorer", no_model)
    third = Manifest.read(
        score({"responses": responses, "prompts": prompts}, config=config, out_dir=out).manifest
    )
    assert third.extra["shards_skipped"] == 4 and third.dropped == {"unknown_prompt": 1}


def test_score_shard_without_its_quarantine_partner_is_redone(tmp_path):
    responses, prompts, _, _ = _inputs(tmp_path)
    config = ScoreConfig(kind="rule", rule="length_target", params={"target": 10}, shard_size=3)
    out = tmp_path / "out"
    score({"responses": responses, "prompts": prompts}, config=config, out_dir=out)
    for path in shard_files(out / "scores.quarantine"):
        path.unlink()
    manifest = Manifest.read(
        score({"responses": responses, "prompts": prompts}, config=config, out_dir=out).manifest
    )
    assert manifest.extra["shards_skipped"] == 0 and manifest.dropped == {"unknown_prompt": 1}


def test_changed_config_removes_stale_shards(tmp_path):
    responses, prompts, _, pairs = _inputs(tmp_path)
    out = tmp_path / "out"
    for target in (5, 20):
        config = ScoreConfig(
            kind="rule", rule="length_target", params={"target": target}, shard_size=4
        )
        result = score({"responses": responses, "prompts": prompts}, config=config, out_dir=out)
    manifest = Manifest.read(result.manifest)
    assert manifest.extra["stale_shards_removed"] == 3 and manifest.extra["shards_skipped"] == 0
    scores = read_frame(result.output, SCORES)
    expected = sorted(-abs(len(text.split()) - 20) / 20 for _, text in pairs[:9])
    assert sorted(scores["score"].to_list()) == pytest.approx(expected)


def test_empty_input_writes_one_empty_shard(tmp_path):
    prompts, _ = fx.write_prompts(RECORDS, tmp_path / "in")
    responses = fx.write_responses([], tmp_path / "in" / "responses.parquet")
    config = ScoreConfig(kind="rule", rule="regex", params={"pattern": "x"})
    result = score(
        {"responses": responses, "prompts": prompts}, config=config, out_dir=tmp_path / "out"
    )
    assert read_frame(result.output, SCORES).height == 0
    assert Manifest.read(result.manifest).rows_in == 0


def test_unknown_rule_fails_before_any_work(tmp_path):
    responses, prompts, _, _ = _inputs(tmp_path)
    with pytest.raises(ConfigError, match="known rules: .*exact_match"):
        score(
            {"responses": responses, "prompts": prompts},
            config=ScoreConfig(kind="rule", rule="nope"),
            out_dir=tmp_path / "out",
        )
    assert not (tmp_path / "out").exists()
