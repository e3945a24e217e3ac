"""Prompts in the row shapes of well-known public datasets (hand-written rows, same fields):
ultrafeedback_binarized, Alpaca, Anthropic HH, and prefsmith's own TRL export read back."""

from __future__ import annotations

import json

import pytest

from prefsmith.generation.prompt_shapes import end_with_user, hh_messages
from prefsmith.generation.prompts import load_prompts
from prefsmith.schemas.config_base import parse_config
from prefsmith.schemas.data_configs import PromptsConfig
from prefsmith.schemas.io import read_table
from prefsmith.schemas.manifest import Manifest
from prefsmith.schemas.tables import PROMPTS, QUARANTINE

# ultrafeedback_binarized: `messages` is the whole chosen conversation, ending with the answer.
ULTRAFEEDBACK = {
    "prompt": "Name a prime number.",
    "prompt_id": "abc123",
    "chosen": [
        {"role": "user", "content": "Name a prime number."},
        {"role": "assistant", "content": "7"},
    ],
    "rejected": [
        {"role": "user", "content": "Name a prime number."},
        {"role": "assistant", "content": "9"},
    ],
    "messages": [
        {"role": "user", "content": "Name a prime number."},
        {"role": "assistant", "content": "7"},
    ],
    "score_chosen": 8.0,
    "score_rejected": 2.0,
}
HH = {
    "chosen": "\n\nHuman: What is a bee?\n\nAssistant: An insect.\n\nHuman: Does it sting?"
    "\n\nAssistant: Some do.",
    "rejected": "\n\nHuman: What is a bee?\n\nAssistant: An insect.\n\nHuman: Does it sting?"
    "\n\nAssistant: No idea.",
}


def run(tmp_path, rows, **options):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = parse_config(PromptsConfig, {"path": str(path), **options})
    result = load_prompts({}, config=config, out_dir=tmp_path / "out")
    return (
        read_table(result.output, PROMPTS).to_pylist(),
        read_table(result.quarantine, QUARANTINE).to_pylist(),
        Manifest.read(result.manifest),
    )


def test_ultrafeedback_messages_lose_the_answer_and_are_counted(tmp_path):
    rows, quarantined, manifest = run(tmp_path, [ULTRAFEEDBACK])
    assert [r["messages"] for r in rows] == [[{"role": "user", "content": "Name a prime number."}]]
    assert quarantined == [] and manifest.extra["trailing_assistant_stripped"] == 1
    assert "messages" not in json.loads(rows[0]["metadata"])  # used fields are not metadata
    assert json.loads(rows[0]["metadata"])["score_chosen"] == 8.0


def test_trailing_assistant_can_be_quarantined_instead(tmp_path):
    rows, quarantined, manifest = run(tmp_path, [ULTRAFEEDBACK], trailing_assistant="quarantine")
    assert rows == [] and [q["reason"] for q in quarantined] == ["ends_with_assistant"]
    assert manifest.rows_in == 1 == manifest.rows_out + sum(manifest.dropped.values())


def test_alpaca_instruction_and_input_make_one_turn(tmp_path):
    alpaca = [
        {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
        {"instruction": "Say hello.", "input": "", "output": "hello"},  # empty input skipped
        {"output": "orphan"},  # neither field
    ]
    rows, quarantined, manifest = run(tmp_path, alpaca, prompt_fields=["instruction", "input"])
    assert [r["messages"][0]["content"] for r in rows] == [
        "Add the numbers.\n\n2 and 3",
        "Say hello.",
    ]
    assert [q["reason"] for q in quarantined] == ["missing_field"]
    assert json.loads(rows[0]["metadata"]) == {"output": "5"}
    assert manifest.rows_in == 3 == manifest.rows_out + sum(manifest.dropped.values())


def test_hh_transcript_becomes_turns_without_the_final_answer(tmp_path):
    bad = {"chosen": "no markers at all"}
    rows, quarantined, _ = run(tmp_path, [HH, bad], transcript_field="chosen")
    assert rows[0]["messages"] == [
        {"role": "user", "content": "What is a bee?"},
        {"role": "assistant", "content": "An insect."},
        {"role": "user", "content": "Does it sting?"},
    ]
    assert [q["reason"] for q in quarantined] == ["bad_transcript"]


def test_hh_parser_on_hand_cases():
    assert hh_messages("\n\nHuman: hi\n\nAssistant: yo") == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
    ]
    assert hh_messages("\n\nAssistant: starts with the answer") is None
    assert hh_messages("plain text") is None


def test_end_with_user_rules():
    user = {"role": "user", "content": "q"}
    answer = {"role": "assistant", "content": "a"}
    assert end_with_user([user, answer, answer], trailing="strip") == ([user], 2)
    assert end_with_user([user], trailing="quarantine") == ([user], 0)
    system_only = [{"role": "system", "content": "s"}, answer]
    assert end_with_user(system_only, trailing="strip") == "no_final_user_turn"


def test_prefsmith_reads_back_its_own_trl_export(tmp_path):
    """The export's `prompt` column holds the prompt's messages (TRL conversational format)."""
    exported = {
        "pair_id": "p1",
        "prompt": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        "chosen": [{"role": "assistant", "content": "hello"}],
        "rejected": [{"role": "assistant", "content": "good day to you"}],
        "score_chosen": 1.0,
        "score_rejected": 0.0,
        "margin": 1.0,
    }
    rows, quarantined, _ = run(tmp_path, [exported])
    assert quarantined == [] and rows[0]["messages"] == exported["prompt"]


@pytest.mark.parametrize("value", [42, [{"role": "wizard", "content": "x"}]])
def test_a_prompt_field_that_is_neither_text_nor_messages_is_quarantined(tmp_path, value):
    rows, quarantined, _ = run(tmp_path, [{"prompt": value}])
    assert rows == [] and [q["reason"] for q in quarantined] == ["bad_messages"]
