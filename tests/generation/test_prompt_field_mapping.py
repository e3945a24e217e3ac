"""A field mapping that matches no row stops the prompts stage with one line naming the fields
looked for and the columns the file has; rows that only sometimes lack the field are quarantined
as before (the negative control)."""

from __future__ import annotations

import json

import polars as pl
import pytest

from prefsmith.generation.prompts import load_prompts
from prefsmith.schemas.data_configs import PromptsConfig
from prefsmith.schemas.errors import InputError


def write(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.parametrize(
    ("mapping", "named"),
    [
        ({}, "'messages', 'prompt'"),
        ({"prompt_fields": ["instruction", "input"]}, "'messages', 'instruction', 'input'"),
        ({"transcript_field": "chosen"}, "'messages', 'chosen', 'prompt'"),
    ],
)
def test_a_mapping_that_matches_no_row_names_fields_and_columns(tmp_path, mapping, named):
    source = write(tmp_path / "p.jsonl", [{"question": "a"}, {"question": "b", "id": 2}])
    config = PromptsConfig(path=str(source), **mapping)
    with pytest.raises(InputError) as caught:
        load_prompts({}, config=config, out_dir=tmp_path / "out")
    line = str(caught.value)
    assert "\n" not in line and f"({named})" in line and "columns are 'id', 'question'" in line
    assert not (tmp_path / "out" / "prompts.parquet").exists()  # stopped before writing


def test_some_rows_without_the_field_are_quarantined_not_a_stop(tmp_path):
    source = write(tmp_path / "p.jsonl", [{"question": "a"}, {"prompt": "b"}])
    result = load_prompts({}, config=PromptsConfig(path=str(source)), out_dir=tmp_path)
    assert pl.read_parquet(result.output).height == 1
    assert pl.read_parquet(result.quarantine)["reason"].to_list() == ["missing_field"]


def test_other_bad_rows_keep_their_own_reasons(tmp_path):
    """Zero prompts, but not all for the missing field: quarantine, as before (no stop here)."""
    source = tmp_path / "p.jsonl"
    source.write_text('{"question": "a"}\nnot json\n')
    result = load_prompts({}, config=PromptsConfig(path=str(source)), out_dir=tmp_path)
    reasons = sorted(pl.read_parquet(result.quarantine)["reason"].to_list())
    assert pl.read_parquet(result.output).height == 0 and reasons == [
        "malformed_json",
        "missing_field",
    ]
