"""The transformers reward-model scorer: padding, pooling, rendering, too-long and template errors."""

from __future__ import annotations

import shutil

import armorm_fixture as fx  # shared test helper (tests/ is on sys.path: tests/conftest.py)
import pytest
import torch

from prefsmith.schemas.data_configs import ScoreConfig
from prefsmith.schemas.io import read_frame
from prefsmith.schemas.manifest import Manifest
from prefsmith.schemas.quarantine import Rejected
from prefsmith.schemas.tables import QUARANTINE, SCORES
from prefsmith.scoring.batching import Scored, ScoreRequest
from prefsmith.scoring.reward_model import load_reward_model
from prefsmith.scoring.stage import score

PROMPT = [{"role": "user", "content": "tell me about the cat"}]


def _requests(texts: list[str]) -> list[ScoreRequest]:
    return [ScoreRequest(f"r{i}", "p", PROMPT, text) for i, text in enumerate(texts)]


def _oracle(scorer, request: ScoreRequest) -> tuple[float, list[int]]:
    """Independent path: render to text, tokenize without special tokens, one unpadded row."""
    tokenizer, model = scorer.tokenizer, scorer.model
    text = tokenizer.apply_chat_template(
        [*request.messages, {"role": "assistant", "content": request.response}], tokenize=False
    )
    ids = tokenizer(text, add_special_tokens=False).input_ids
    with torch.inference_mode():
        logit = model(input_ids=torch.tensor([ids])).logits[0, 0]  # (1, 1) -> ()
    return float(logit), ids


def test_batched_scores_equal_one_at_a_time(tiny):
    texts = [fx.words(1), fx.words(150, seed=1), fx.words(12, seed=2), "", fx.words(60, seed=3)]
    scorer = load_reward_model(ScoreConfig(model=str(tiny.reward_model), token_budget=100_000))
    requests = _requests(texts)
    batched = scorer(requests)  # one batch: the budget covers all rows
    lengths = []
    for request, outcome in zip(requests, batched, strict=True):
        expected, ids = _oracle(scorer, request)
        assert isinstance(outcome, Scored)
        assert outcome.score == pytest.approx(expected, abs=1e-5)
        assert outcome.n_tokens == len(ids)
        assert ids[0] == scorer.tokenizer.bos_token_id and ids.count(ids[0]) == 1  # one BOS
        lengths.append(len(ids))
    assert max(lengths) - min(lengths) > 100  # the short rows really were padded a lot
    singles = [scorer([r])[0].score for r in requests]
    assert [o.score for o in batched] == pytest.approx(singles, abs=1e-5)
    assert len({round(s, 6) for s in singles}) == len(singles)  # distinct: no row scored twice


def test_small_budget_gives_the_same_scores(tiny):
    texts = [fx.words(n, seed=n) for n in (3, 40, 9, 80, 20, 5)]
    config = ScoreConfig(model=str(tiny.reward_model), token_budget=100_000)
    wide = [o.score for o in load_reward_model(config)(_requests(texts))]
    narrow = load_reward_model(config.model_copy(update={"token_budget": 64}))
    assert [o.score for o in narrow(_requests(texts))] == pytest.approx(wide, abs=1e-5)


def test_too_long_rows_are_rejected_not_truncated(tiny):
    base = load_reward_model(ScoreConfig(model=str(tiny.reward_model)))
    short, long = _requests([fx.words(2), fx.words(100)])
    n_short = base([short])[0].n_tokens
    limited = load_reward_model(ScoreConfig(model=str(tiny.reward_model), max_length=n_short + 2))
    outcomes = limited([short, long])
    assert isinstance(outcomes[1], Rejected) and outcomes[1].reason == "too_long"
    assert outcomes[0].score == pytest.approx(base([short])[0].score, abs=1e-6)


def _model_copy(tiny, tmp_path, template: str | None):
    folder = tmp_path / "rm_copy"
    shutil.copytree(tiny.reward_model, folder)
    if template is None:
        (folder / "chat_template.jinja").unlink()
    else:
        (folder / "chat_template.jinja").write_text(template)
    return folder


def _run(tmp_path, folder, records, texts_per_prompt):
    prompts, ids = fx.write_prompts(records, tmp_path / "in")
    pairs = [(pid, t) for pid in ids for t in texts_per_prompt]
    responses = fx.write_responses(pairs, tmp_path / "in" / "responses.parquet")
    config = ScoreConfig(model=str(folder), shard_size=3)
    inputs = {"responses": responses, "prompts": prompts}
    return score(inputs, config=config, out_dir=tmp_path / "out"), ids


def test_template_error_quarantines_only_that_row(tiny, tmp_path):
    no_system = (
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('system role not supported') }}{% endif %}{% endfor %}"
        + (tiny.reward_model / "chat_template.jinja").read_text()
    )
    folder = _model_copy(tiny, tmp_path, no_system)
    records = [
        {"prompt": "tell me about the dog"},
        {
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"},
            ]
        },
        {"prompt": "count to three"},
    ]
    result, ids = _run(tmp_path, folder, records, ["one two", "the red cat"])
    scores = read_frame(result.output, SCORES)
    quarantine = read_frame(result.quarantine, QUARANTINE)
    assert sorted(scores["prompt_id"].unique()) == sorted([ids[0], ids[2]])
    assert quarantine["reason"].to_list() == ["template_error"] * 2
    assert "system role not supported" in quarantine["detail"][0]
    manifest = Manifest.read(result.manifest)
    assert (manifest.rows_in, manifest.rows_out, manifest.dropped) == (6, 4, {"template_error": 2})


def test_missing_chat_template_quarantines_rows(tiny, tmp_path):
    folder = _model_copy(tiny, tmp_path, None)
    result, _ = _run(tmp_path, folder, [{"prompt": "hi"}], ["a b", "c"])
    manifest = Manifest.read(result.manifest)
    assert (manifest.rows_out, manifest.dropped) == (0, {"template_error": 2})


@pytest.fixture(scope="module")
def eot_pad_rm(tiny, tmp_path_factory):
    """A Llama-3-template classifier whose pad token is `<|eot_id|>`, config without pad_token_id."""
    return fx.build_eot_pad_reward_model(tmp_path_factory.mktemp("eot") / "rm", tiny.tokenizer)


def _true_last_token_score(scorer, request: ScoreRequest) -> float:
    """Backbone + head weights applied by hand at the last rendered token (one unpadded row)."""
    _, ids = _oracle_ids(scorer.tokenizer, request)
    with torch.inference_mode():
        hidden = scorer.model.model(input_ids=torch.tensor([ids])).last_hidden_state  # (1, T, H)
        return float(hidden[0, -1] @ scorer.model.score.weight[0])  # (H,) · (H,) -> ()


def _oracle_ids(tokenizer, request: ScoreRequest):
    text = tokenizer.apply_chat_template(
        [*request.messages, {"role": "assistant", "content": request.response}], tokenize=False
    )
    return text, tokenizer(text, add_special_tokens=False).input_ids


def test_pad_equal_to_end_of_turn_scores_the_true_last_token(eot_pad_rm):
    texts = [fx.words(3), f"{fx.words(20, seed=1)} {fx.EOT} {fx.words(5, seed=2)}", fx.words(70)]
    scorer = load_reward_model(ScoreConfig(model=str(eot_pad_rm), token_budget=100_000))
    eot = scorer.tokenizer.convert_tokens_to_ids(fx.EOT)
    assert scorer.tokenizer.pad_token_id == eot and scorer.model.config.pad_token_id is None
    requests = _requests(texts)
    batched = scorer(requests)
    singles = [scorer([r])[0].score for r in requests]
    assert [o.score for o in batched] == pytest.approx(singles, abs=1e-5)
    for request, outcome in zip(requests, batched, strict=True):
        _, ids = _oracle_ids(scorer.tokenizer, request)
        assert ids[-1] == eot and outcome.n_tokens == len(ids)  # the template ends the turn
        assert outcome.score == pytest.approx(_true_last_token_score(scorer, request), abs=1e-5)
    # What a pad-id pooler would read: transformers' head with the tokenizer's pad id copied in.
    scorer.model.config.pad_token_id = eot
    _, ids = _oracle_ids(scorer.tokenizer, requests[1])
    with torch.inference_mode():
        pad_pooled = float(scorer.model(input_ids=torch.tensor([ids])).logits[0, 0])
    assert abs(pad_pooled - batched[1].score) > 1e-3  # the defect this guards against is real


def test_an_encoder_classifier_is_refused_in_one_line(tiny, tmp_path):
    import json

    from transformers import BertConfig

    from prefsmith.schemas.errors import ConfigError

    folder = _model_copy(tiny, tmp_path, None)
    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_labels=1)
    config.architectures = ["BertForSequenceClassification"]
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    with pytest.raises(
        ConfigError, match="BertForSequenceClassification; kind 'reward_model'"
    ) as e:
        load_reward_model(ScoreConfig(model=str(folder)))
    assert "\n" not in str(e.value) and "Llama" in str(e.value)
