"""Rendering pairs with the policy's chat template: one BOS, prompt masked, EOS in, truncation."""

from __future__ import annotations

import copy

from prefsmith.training.render import render_pairs, template_hash, truncate

MESSAGES = [{"role": "user", "content": "tell me about the cat"}]


def _row(chosen="the dog runs", rejected="no", messages=MESSAGES, pair_id="p0"):
    return {"pair_id": pair_id, "messages": messages, "chosen": chosen, "rejected": rejected}


def _render(tokenizer, rows, *, max_length=128, max_prompt_length=64):
    return render_pairs(
        rows,
        tokenizer=tokenizer,
        end_ids=[tokenizer.eos_token_id],
        max_length=max_length,
        max_prompt_length=max_prompt_length,
    )


def test_one_bos_and_prompt_equals_the_generation_prompt(tiny_tokenizer):
    tok = tiny_tokenizer
    (pair,), rejected = _render(tok, [_row()])
    assert rejected == []
    assert pair.prompt_ids[0] == tok.bos_token_id
    assert (pair.prompt_ids + pair.chosen_ids).count(tok.bos_token_id) == 1
    expected = tok.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert tok.decode(pair.prompt_ids) == expected  # the prompt ends with '<|assistant|>\n'


def test_completion_is_the_response_then_eos_nothing_after(tiny_tokenizer):
    tok = tiny_tokenizer
    (pair,), _ = _render(tok, [_row(chosen="the dog runs", rejected="yes")])
    assert pair.chosen_ids[-1] == tok.eos_token_id and pair.rejected_ids[-1] == tok.eos_token_id
    assert pair.chosen_ids.count(tok.eos_token_id) == 1
    assert (
        tok.decode(pair.chosen_ids) == "the dog runs" + tok.eos_token
    )  # template's '\n' after EOS dropped
    full = tok.apply_chat_template(
        [*MESSAGES, {"role": "assistant", "content": "the dog runs"}], tokenize=False
    )
    assert tok.decode(pair.prompt_ids + pair.chosen_ids) + "\n" == full


def test_template_without_eos_gets_one_appended(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = (
        "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    )
    (pair,), _ = _render(tok, [_row()])
    assert pair.chosen_ids[-1] == tok.eos_token_id
    assert tok.decode(pair.chosen_ids[:-1]) == "the dog runs\n"


def test_tokenizer_that_adds_bos_never_gives_two(tiny_tokenizer):
    """The tiny tokenizer's post-processor adds BOS too: rendering must not double it."""
    tok = tiny_tokenizer
    text = tok.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert tok(text).input_ids[:2] == [tok.bos_token_id] * 2  # the trap exists
    (pair,), _ = _render(tok, [_row()])
    assert pair.prompt_ids[:2] != [tok.bos_token_id] * 2


def test_truncation_cuts_the_prompt_from_the_left_keeping_bos_then_the_completion():
    prompt = [1, 10, 11, 12, 13, 14, 15, 16]
    chosen, rejected = [20, 21, 22, 2], [30, 2]
    cut_prompt, (c, r) = truncate(prompt, [chosen, rejected], max_length=8, max_prompt_length=4)
    assert cut_prompt == [1, 14, 15, 16]  # BOS kept, then the prompt's end
    assert c == [20, 21, 22, 2] and r == [30, 2]
    cut_prompt, (c, r) = truncate(prompt, [chosen, rejected], max_length=6, max_prompt_length=4)
    assert cut_prompt == [1, 14, 15, 16] and c == [20, 21] and r == [30, 2]  # completion cut right


def test_no_truncation_when_it_fits_and_prompt_never_cut_to_nothing():
    prompt, completions = [1, 10, 11], [[20, 2], [30, 2]]
    assert truncate(prompt, completions, max_length=5, max_prompt_length=2) == (prompt, completions)
    cut_prompt, (c, _) = truncate(
        [1, 10, 11, 12], [[20, 21, 2], [2]], max_length=3, max_prompt_length=1
    )
    assert cut_prompt == [1] and c == [20, 21]


def test_truncation_that_leaves_nothing_is_a_reason():
    assert truncate([1, 10, 11], [[20, 2]], max_length=3, max_prompt_length=3) == "prompt_too_long"


def test_truncated_pairs_keep_one_shared_prompt(tiny_tokenizer):
    long_prompt = [{"role": "user", "content": "tell me about the cat " * 20}]
    (pair,), rejected = _render(
        tiny_tokenizer,
        [_row(messages=long_prompt, chosen="yes " * 30)],
        max_length=40,
        max_prompt_length=16,
    )
    assert rejected == []
    assert len(pair.prompt_ids) == 16 and pair.prompt_ids[0] == tiny_tokenizer.bos_token_id
    assert len(pair.prompt_ids) + len(pair.chosen_ids) == 40
    assert pair.rejected_ids[-1] == tiny_tokenizer.eos_token_id  # short side kept whole


def test_template_errors_are_quarantined_with_a_reason(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = (
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
        + tiny_tokenizer.chat_template
    )
    system = [{"role": "system", "content": "be brief"}, *MESSAGES]
    rendered, rejected = _render(tok, [_row(pair_id="a"), _row(messages=system, pair_id="b")])
    assert rendered[0] is not None and rendered[1] is None
    assert [(r.row_ref, r.reason) for r in rejected] == [("b", "template_error")]
    assert "no system role" in rejected[0].detail


def test_prompt_that_is_not_a_prefix_is_quarantined_and_the_rest_render(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    # a generation prompt the conversation never writes: not prefix-stable, for every row
    tok.chat_template = (
        "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}"
        "{% endfor %}{% if add_generation_prompt %}<|system|>\n{% endif %}"
    )
    rendered, rejected = _render(tok, [_row(pair_id="a"), _row(pair_id="b")])
    assert rendered == [None, None]
    assert [(r.row_ref, r.reason) for r in rejected] == [
        ("a", "template_not_prefix_stable"),
        ("b", "template_not_prefix_stable"),
    ]
    # control: the tiny template itself is prefix-stable
    assert _render(tiny_tokenizer, [_row(pair_id="a")])[1] == []


def test_template_hash_changes_with_the_template(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    before = template_hash(tok)
    tok.chat_template = tok.chat_template + " "
    assert template_hash(tok) != before and template_hash(tiny_tokenizer) == before
