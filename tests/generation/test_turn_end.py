"""The end-of-turn ids: generation config's EOS list first, then the tokenizer's; bad files stop."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from prefsmith.generation.turn_end import closing_token, cut_at_turn_end, end_of_turn_ids
from prefsmith.schemas.errors import StageError

TOKENIZER = SimpleNamespace(eos_token_id=1)  # only `eos_token_id` is read


def _folder(tmp_path, settings) -> str:
    (tmp_path / "generation_config.json").write_text(json.dumps(settings))
    return str(tmp_path)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"eos_token_id": [1, 107]}, (1, 107)),  # Gemma-2: <eos>, <end_of_turn>
        ({"eos_token_id": [128001, 128009]}, (128001, 128009, 1)),  # tokenizer EOS appended
        ({"eos_token_id": 7}, (7, 1)),  # an int, not a list
        ({"bos_token_id": 0}, (1,)),  # no eos_token_id: the tokenizer's alone
    ],
)
def test_generation_config_ids_then_the_tokenizers(tmp_path, settings, expected):
    assert end_of_turn_ids(_folder(tmp_path, settings), TOKENIZER) == expected


def test_without_a_generation_config_the_tokenizer_eos(tmp_path):
    assert end_of_turn_ids(tmp_path, TOKENIZER) == (1,)
    assert end_of_turn_ids(None, TOKENIZER) == (1,)


@pytest.mark.parametrize("text", ["{not json", '{"eos_token_id": "</s>"}', "[1, 2]"])
def test_an_unusable_generation_config_stops_with_one_line(tmp_path, text):
    (tmp_path / "generation_config.json").write_text(text)
    with pytest.raises(StageError, match="generation_config.json") as caught:
        end_of_turn_ids(tmp_path, TOKENIZER)
    assert "\n" not in str(caught.value)


def test_no_eos_anywhere_stops(tmp_path):
    with pytest.raises(StageError, match="never stop"):
        end_of_turn_ids(tmp_path, SimpleNamespace(eos_token_id=None))


def test_cut_through_the_first_end_and_append_where_none():
    assert cut_at_turn_end([5, 6, 107, 9, 1], [1, 107], append=1) == [5, 6, 107]
    assert cut_at_turn_end([5, 6], [1, 107], append=1) == [5, 6, 1]
    assert closing_token((128001, 128009), SimpleNamespace(eos_token_id=None)) == 128001
    assert closing_token((128001, 128009), SimpleNamespace(eos_token_id=128009)) == 128009
