"""Rule scorers against hand-computed values, their parameter checks and the registry."""

from __future__ import annotations

import pytest

from prefsmith.schemas.errors import ConfigError
from prefsmith.scoring.rules import (
    PROMPT_METADATA,
    RULES,
    RuleRowError,
    extract_answer,
    get_rule,
    register_rule,
)

MSGS = [{"role": "user", "content": "what is six times seven?"}]


def _em(response: str, metadata: dict, **params) -> float:
    return get_rule("exact_match", params=params)(
        MSGS, response, {**params, PROMPT_METADATA: metadata}
    )


@pytest.mark.parametrize(
    ("response", "reference", "expected"),
    [
        ("six times seven... answer: 42.", 42, 1.0),  # text after "answer:", trailing period
        ("first 41, then 42", "42", 1.0),  # no "answer:": the last number
        ("42 is wrong, the answer: 41", 42, 0.0),  # "answer:" wins over an earlier number
        ("Answer:   Paris", "paris", 1.0),  # case and spaces
        ("answer: 1,000", 1000, 1.0),  # thousands separator
        ("answer: 4.0", "4", 1.0),  # 4 == 4.0
        ("I do not know", 42, 0.0),  # nothing to extract
        ("-3 degrees", "-3", 1.0),
    ],
)
def test_exact_match_hand_values(response, reference, expected):
    assert _em(response, {"answer": reference}) == expected


def test_exact_match_custom_regex_and_key():
    assert (
        _em(
            r"so \boxed{7} and 8",
            {"gold": "7"},
            answer_key="gold",
            answer_regex=r"\\boxed\{([^}]*)\}",
        )
        == 1.0
    )
    assert extract_answer("x=3; x=5", pattern=r"x=\d") == "x=5"  # no group: the whole last match


def test_exact_match_missing_reference_is_a_row_error():
    with pytest.raises(RuleRowError) as caught:
        _em("answer: 1", {"other": 1})
    assert caught.value.reason == "missing_reference"


def test_regex_match_and_count():
    rule = get_rule("regex", params={"pattern": "cat"})
    assert rule(MSGS, "the cat saw a cat", {"pattern": "cat"}) == 1.0
    assert rule(MSGS, "the dog", {"pattern": "cat"}) == 0.0
    assert rule(MSGS, "the cat saw a cat", {"pattern": "cat", "count": True}) == 2.0
    assert rule(MSGS, "Cat CAT", {"pattern": "cat", "count": True, "ignore_case": True}) == 2.0
    assert rule(MSGS, "Cat CAT", {"pattern": "cat", "count": True}) == 0.0


@pytest.mark.parametrize(("n_words", "expected"), [(10, 0.0), (7, -0.3), (15, -0.5), (0, -1.0)])
def test_length_target_hand_values(n_words, expected):
    rule = get_rule("length_target", params={"target": 10})
    assert rule(MSGS, " ".join(["w"] * n_words), {"target": 10}) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("regex", {}, "score.params.pattern"),
        ("regex", {"pattern": "("}, "score.params.pattern"),
        ("length_target", {"target": 0}, "score.params.target"),
        ("length_target", {}, "score.params.target"),
        ("exact_match", {"answer_regex": "[unclosed"}, "score.params.answer_regex"),
        ("exact_match", {PROMPT_METADATA: {}}, "score.params"),
    ],
)
def test_bad_params_are_one_line_config_errors(name, params, field):
    with pytest.raises(ConfigError) as caught:
        get_rule(name, params=params)
    assert str(caught.value).startswith(field) and "\n" not in str(caught.value)


def test_unknown_rule_lists_the_known_names():
    with pytest.raises(ConfigError) as caught:
        get_rule("no_such_rule")
    message = str(caught.value)
    assert "'no_such_rule'" in message
    for known in ("exact_match", "regex", "length_target"):
        assert known in message


def test_register_rule_adds_to_the_registry():
    @register_rule("test_word_count")
    def word_count(prompt_messages, response, params):
        return float(len(response.split()))

    assert RULES["test_word_count"] is word_count
    assert get_rule("test_word_count")(MSGS, "a b c", {}) == 3.0
