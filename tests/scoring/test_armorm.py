"""ArmoRM-style scoring with a tiny custom-code model (trust_remote_code): objectives, gates, opt-in."""

from __future__ import annotations

from types import SimpleNamespace

import armorm_fixture as fx  # shared test helper (tests/ is on sys.path: tests/conftest.py)
import pytest
import torch

from prefsmith.schemas.data_configs import ScoreConfig
from prefsmith.schemas.errors import ConfigError
from prefsmith.schemas.io import read_frame
from prefsmith.schemas.manifest import Manifest
from prefsmith.schemas.tables import RESPONSES, SCORES
from prefsmith.scoring.reward_model import ModelScorer
from prefsmith.scoring.stage import score


@pytest.fixture(scope="module")
def tiny_armorm(tiny, tmp_path_factory):
    """Folder of a tiny ArmoRM-like model (19 named objectives, custom code via auto_map)."""
    path = fx.build_tiny_armorm(tmp_path_factory.mktemp("armorm") / "tiny_armo", tiny.tokenizer)
    return SimpleNamespace(path=path, objective_names=list(fx.OBJECTIVE_NAMES))


def _inputs(tmp_path):
    records = [{"prompt": "tell me about the star"}, {"prompt": "count to nine"}]
    prompts, ids = fx.write_prompts(records, tmp_path / "in")
    pairs = [(pid, fx.words(n, seed=n)) for pid in ids for n in (2, 45, 17)]
    return fx.write_responses(pairs, tmp_path / "in" / "responses.parquet"), prompts, records, ids


def _oracle(path):
    """One unpadded forward per row of the custom model, loaded the way users load it."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForSequenceClassification.from_pretrained(str(path), trust_remote_code=True)
    return lambda messages, text: _forward(model, tokenizer, messages, text)


def _forward(model, tokenizer, messages, text):
    chat = [*messages, {"role": "assistant", "content": text}]
    ids = tokenizer(
        tokenizer.apply_chat_template(chat, tokenize=False), add_special_tokens=False
    ).input_ids
    with torch.inference_mode():
        out = model.eval()(input_ids=torch.tensor([ids]))
    # (1, 1) -> (), (1, K) -> (K,), (1, K) -> (K,)
    return float(out.score[0, 0]), out.rewards[0].tolist(), out.gating_output[0].tolist()


def test_armorm_scores_and_named_objectives(tiny_armorm, tmp_path):
    responses, prompts, records, ids = _inputs(tmp_path)
    config = ScoreConfig(
        kind="armorm", model=str(tiny_armorm.path), trust_remote_code=True, shard_size=4
    )
    result = score(
        {"responses": responses, "prompts": prompts}, config=config, out_dir=tmp_path / "out"
    )
    scores = read_frame(result.output, SCORES).join(
        read_frame(responses, RESPONSES).select("response_id", "response"), on="response_id"
    )
    assert scores.height == 6 and Manifest.read(result.manifest).dropped == {}
    oracle = _oracle(tiny_armorm.path)
    messages = {
        pid: [{"role": "user", "content": r["prompt"]}] for pid, r in zip(ids, records, strict=True)
    }
    for row in scores.iter_rows(named=True):
        expected_score, rewards, gates = oracle(messages[row["prompt_id"]], row["response"])
        names = tiny_armorm.objective_names  # 19, in order, then their gating weights
        assert [o["name"] for o in row["objectives"]] == names + [f"gate/{n}" for n in names]
        assert [o["value"] for o in row["objectives"]] == pytest.approx(rewards + gates, abs=1e-5)
        assert row["score"] == pytest.approx(expected_score, abs=1e-5)
    assert len(tiny_armorm.objective_names) == 19


def test_objective_names_from_params_override_and_must_match(tiny_armorm, tmp_path):
    responses, prompts, _, _ = _inputs(tmp_path)
    names = [f"o{k}" for k in range(19)]
    config = ScoreConfig(
        kind="armorm",
        model=str(tiny_armorm.path),
        trust_remote_code=True,
        params={"objective_names": names},
    )
    result = score(
        {"responses": responses, "prompts": prompts}, config=config, out_dir=tmp_path / "a"
    )
    first = read_frame(result.output, SCORES)["objectives"][0]
    assert [o["name"] for o in first] == names + [f"gate/{n}" for n in names]
    wrong = config.model_copy(update={"params": {"objective_names": names[:3]}})
    with pytest.raises(ConfigError, match="3 names given but the model returns 19"):
        score({"responses": responses, "prompts": prompts}, config=wrong, out_dir=tmp_path / "b")


def test_default_objective_names():
    scorer = ModelScorer(model=None, tokenizer=None, max_length=8, token_budget=8)
    assert scorer.names_for(3) == ("obj_0", "obj_1", "obj_2") and scorer.names_for(0) == ()


@pytest.mark.parametrize("kind", ["armorm", "reward_model", "vllm_pooling"])
def test_remote_code_needs_an_explicit_opt_in(tiny_armorm, tmp_path, kind):
    responses, prompts, _, _ = _inputs(tmp_path)
    config = ScoreConfig(kind=kind, model=str(tiny_armorm.path))
    with pytest.raises(ConfigError) as caught:
        score({"responses": responses, "prompts": prompts}, config=config, out_dir=tmp_path / "out")
    message = str(caught.value)
    assert "trust_remote_code" in message and "\n" not in message
    assert not (tmp_path / "out" / "scores").exists()  # refused before any work


def test_armorm_kind_on_a_plain_classifier_names_kind_reward_model(tiny, tmp_path):
    responses, prompts, _, _ = _inputs(tmp_path)
    config = ScoreConfig(kind="armorm", model=str(tiny.reward_model))
    with pytest.raises(
        ConfigError, match="LlamaForSequenceClassification: use kind 'reward_model'"
    ):
        score({"responses": responses, "prompts": prompts}, config=config, out_dir=tmp_path / "out")


@pytest.mark.parametrize("kind", ["reward_model", "vllm_pooling"])
def test_a_custom_architecture_is_refused_in_one_line(tiny_armorm, tmp_path, kind):
    """1-D custom heads cannot be pooled from lengths by these kinds: one line, no traceback."""
    responses, prompts, _, _ = _inputs(tmp_path)
    config = ScoreConfig(kind=kind, model=str(tiny_armorm.path), trust_remote_code=True)
    with pytest.raises(ConfigError, match="TinyArmoForRewardModel") as caught:
        score({"responses": responses, "prompts": prompts}, config=config, out_dir=tmp_path / "out")
    message = str(caught.value)
    assert "\n" not in message and ("kind 'reward_model'" in message or "kind: armorm" in message)
