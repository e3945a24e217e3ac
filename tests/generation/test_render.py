"""Rendering with the policy's own template: exactly one BOS, and quarantine of unusable prompts."""

from __future__ import annotations

import shutil

import pytest

from prefsmith.generation.render import (
    check_single_bos,
    prompt_length,
    render_or_reject,
    render_prompt_ids,
    require_chat_template,
)
from prefsmith.schemas.errors import StageError
from prefsmith.schemas.quarantine import Rejected

CONVERSATIONS = [
    [{"role": "user", "content": "tell me about the cat"}],
    [{"role": "system", "content": "be brief"}, {"role": "user", "content": "count to five"}],
    [
        {"role": "user", "content": "what color is the moon ?"},
        {"role": "assistant", "content": "blue"},
        {"role": "user", "content": "and the sun ?"},
    ],
]
NO_SYSTEM_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system turn') }}{% endif %}"
    "{{ bos_token }}{% for m in messages %}{{ '<|' + m['role'] + '|>' }}\n{{ m['content'] }}"
    "{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}\n{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer(tiny):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny.policy))


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_rendered_ids_start_with_exactly_one_bos(tokenizer, messages):
    ids = render_prompt_ids(messages, tokenizer=tokenizer)
    bos = tokenizer.bos_token_id
    assert ids[0] == bos and ids.count(bos) == 1
    # Oracle: the template text written out by hand, decoded back from the ids.
    turns = "".join(f"<|{m['role']}|>\n{m['content']}</s>\n" for m in messages)
    assert tokenizer.decode(ids, skip_special_tokens=False) == f"<s>{turns}<|assistant|>\n"
    assert ids[-2:] == [tokenizer.convert_tokens_to_ids("<|assistant|>"), ids[-1]]
    assert prompt_length(messages, tokenizer=tokenizer) == len(ids)


def test_naive_encoding_doubles_bos_and_the_check_refuses_it(tokenizer):
    text = tokenizer.apply_chat_template(
        CONVERSATIONS[0], add_generation_prompt=True, tokenize=False
    )
    doubled = tokenizer(text, add_special_tokens=True)["input_ids"]  # the trap the check exists for
    bos = tokenizer.bos_token_id
    assert doubled[:2] == [bos, bos]
    with pytest.raises(StageError, match="double BOS"):
        check_single_bos(doubled, bos_token_id=bos)
    check_single_bos(doubled[1:], bos_token_id=bos)  # one BOS passes
    check_single_bos([bos, bos], bos_token_id=None)  # a tokenizer without BOS has nothing to check


def test_render_or_reject_reasons(tokenizer):
    messages = CONVERSATIONS[0]
    length = prompt_length(messages, tokenizer=tokenizer)
    fits = render_or_reject(messages, prompt_id="p", tokenizer=tokenizer, max_context=length + 1)
    assert isinstance(fits, list) and len(fits) == length
    too_long = render_or_reject(messages, prompt_id="p", tokenizer=tokenizer, max_context=length)
    assert isinstance(too_long, Rejected) and too_long.reason == "prompt_too_long"
    assert too_long.row_ref == "p" and f"{length} prompt tokens" in too_long.detail


def test_template_refusal_is_a_template_error(tokenizer):
    strict = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    strict.chat_template = NO_SYSTEM_TEMPLATE
    rejected = render_or_reject(CONVERSATIONS[1], prompt_id="s", tokenizer=strict, max_context=512)
    assert isinstance(rejected, Rejected) and rejected.reason == "template_error"
    assert "no system turn" in rejected.detail
    assert isinstance(
        render_or_reject(CONVERSATIONS[0], prompt_id="u", tokenizer=strict, max_context=512), list
    )
    strict.chat_template = None
    with pytest.raises(StageError, match="no chat template"):
        require_chat_template(strict, model="m")


def test_stage_quarantines_and_reconciles(tiny, tmp_path, make_prompts, prompt_texts):
    """Long and template-refused prompts are quarantined, counted, and every prompt is accounted for."""
    from prefsmith.generation.stage import generate
    from prefsmith.schemas.data_configs import GenerateConfig
    from prefsmith.schemas.io import read_frame
    from prefsmith.schemas.manifest import Manifest
    from prefsmith.schemas.tables import QUARANTINE, RESPONSES

    model = tmp_path / "policy"
    shutil.copytree(tiny.policy, model)
    (model / "chat_template.jinja").write_text(NO_SYSTEM_TEMPLATE)
    texts = prompt_texts(4) + ["tell me about the cat " * 80]
    system = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "count to two"},
    ]
    table = make_prompts([*texts, system])
    config = GenerateConfig(
        model=str(model),
        backend="transformers",
        max_model_len=96,
        shard_size=2,
        sampling={"n": 2, "temperature": 0.7, "max_new_tokens": 4},
    )
    result = generate({"prompts": table}, config=config, out_dir=tmp_path / "out")

    manifest = Manifest.read(result.manifest)
    quarantine = read_frame(result.quarantine, QUARANTINE)
    responses = read_frame(result.output, RESPONSES)
    assert manifest.dropped == {"prompt_too_long": 1, "template_error": 1}
    assert sorted(quarantine["reason"]) == ["prompt_too_long", "template_error"]
    assert manifest.rows_in == 6 and manifest.rows_out == 4
    assert manifest.rows_written == {"responses": 8, "quarantine": 2}
    assert responses.height == 8 and responses["response_id"].n_unique() == 8
    assert set(responses["prompt_id"]).isdisjoint(set(quarantine["row_ref"]))
    assert (responses["n_tokens"] <= 4).all()
    assert manifest.extra["shards_total"] == 2 and manifest.extra["shards_skipped"] == 0
    assert result.manifest == tmp_path / "out" / "responses.manifest.json"
    assert result.quarantine == tmp_path / "out" / "responses.quarantine.parquet"


def test_completion_is_capped_by_the_context(tiny, tmp_path, make_prompts):
    """A prompt 2 tokens short of the context gets at most 2 new tokens, whatever max_new_tokens says."""
    from transformers import AutoTokenizer

    from prefsmith.generation.stage import generate
    from prefsmith.schemas.data_configs import GenerateConfig
    from prefsmith.schemas.io import read_frame
    from prefsmith.schemas.tables import RESPONSES

    messages = [{"role": "user", "content": "write a story about a dog and a cat"}]
    tokenizer = AutoTokenizer.from_pretrained(str(tiny.policy))
    length = prompt_length(messages, tokenizer=tokenizer)
    config = GenerateConfig(
        model=str(tiny.policy),
        backend="transformers",
        max_model_len=length + 2,
        sampling={"n": 3, "temperature": 1.0, "max_new_tokens": 50},
    )
    result = generate(
        {"prompts": make_prompts([messages])}, config=config, out_dir=tmp_path / "out"
    )
    responses = read_frame(result.output, RESPONSES)
    assert responses.height == 3
    assert (responses["n_tokens"] <= 2).all()
    ended_early = responses.filter(responses["n_tokens"] < 2)
    assert (ended_early["finish_reason"] == "stop").all()
