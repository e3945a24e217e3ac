"""The prompts stage: every input format, every kind of bad row, counts that reconcile."""

from __future__ import annotations

import json

import polars as pl
import pytest

from prefsmith.generation.prompts import load_prompts
from prefsmith.schemas.config_base import parse_config
from prefsmith.schemas.data_configs import PromptsConfig
from prefsmith.schemas.errors import InputError
from prefsmith.schemas.ids import prompt_id
from prefsmith.schemas.io import read_table
from prefsmith.schemas.manifest import Manifest
from prefsmith.schemas.tables import PROMPTS, QUARANTINE

MESSY_JSONL = b"\n".join(
    [
        b'{"prompt": "What is 2+2?", "answer": "4"}',
        b'{"prompt": "  What is 2+2?  "}',  # duplicate after strip
        b'{"messages": [{"role": "user", "content": "hi"}]}',
        b'{"prompt": "broken"',  # malformed JSON
        b'{"prompt": "   "}',  # whitespace
        b'{"text": "no prompt field"}',  # missing field
        b'{"prompt": "caf\xe9"}',  # Latin-1, not UTF-8
        b'{"messages": [{"role": "wizard", "content": "x"}]}',  # unknown role
        b"[1, 2]",  # not an object
        b"",  # blank line: layout
        b'{"messages": "[{\\"role\\": \\"user\\", \\"content\\": \\"json in a string\\"}]"}',
    ]
)


def _run(tmp_path, path, **options):
    config = parse_config(PromptsConfig, {"path": str(path), **options})
    result = load_prompts({}, config=config, out_dir=tmp_path / "out")
    return result, read_table(result.output, PROMPTS).to_pylist(), Manifest.read(result.manifest)


def test_messy_jsonl_quarantines_each_bad_row_with_its_reason(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(MESSY_JSONL)
    result, rows, manifest = _run(tmp_path, path)
    assert [r["messages"][-1]["content"] for r in rows] == [
        "What is 2+2?",
        "hi",
        "json in a string",
    ]
    quarantined = read_table(result.quarantine, QUARANTINE).to_pylist()
    reasons = {q["row_ref"]: q["reason"] for q in quarantined}
    assert reasons == {
        "p.jsonl:4": "malformed_json",
        "p.jsonl:5": "empty_prompt",
        "p.jsonl:6": "missing_field",
        "p.jsonl:7": "not_utf8",
        "p.jsonl:8": "bad_messages",
        "p.jsonl:9": "malformed_json",
    }
    assert manifest.rows_in == 10 and manifest.rows_out == 3
    assert manifest.dropped["duplicate_merged"] == 1
    assert manifest.rows_in == manifest.rows_out + sum(manifest.dropped.values())
    assert json.loads(rows[0]["metadata"]) == {"answer": "4"}
    assert rows[0]["prompt_id"] == prompt_id([{"role": "user", "content": "What is 2+2?"}])


@pytest.mark.parametrize("fmt", ["parquet", "csv", "hf"])
def test_other_formats_give_the_same_prompts(tmp_path, fmt):
    frame = pl.DataFrame(
        {"prompt": ["a question", "another", "a question"], "answer": ["1", "2", "1"]}
    )
    if fmt == "parquet":
        path = tmp_path / "p.parquet"
        frame.write_parquet(path)
    elif fmt == "csv":
        path = tmp_path / "p.csv"
        frame.write_csv(path)
    else:
        import datasets

        path = tmp_path / "hf"
        datasets.DatasetDict(
            {"train": datasets.Dataset.from_dict(frame.to_dict(as_series=False))}
        ).save_to_disk(str(path))
    _, rows, manifest = _run(tmp_path, path, system_prompt="Be brief.")
    assert [r["messages"] for r in rows] == [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": q}]
        for q in ("a question", "another")
    ]
    assert manifest.dropped == {"duplicate_merged": 1}


def test_unusable_inputs_stop_with_one_line(tmp_path):
    with pytest.raises(InputError, match="not found"):
        _run(tmp_path, tmp_path / "nope.jsonl")
    odd = tmp_path / "p.txt"
    odd.write_text("x")
    with pytest.raises(InputError, match="set format"):
        _run(tmp_path, odd)
    with pytest.raises(InputError, match="no split 'test'"):
        import datasets

        datasets.DatasetDict({"train": datasets.Dataset.from_dict({"prompt": ["x"]})}).save_to_disk(
            str(tmp_path / "hf")
        )
        _run(tmp_path, tmp_path / "hf", split="test")


def test_split_is_by_id_hash_and_stable_when_the_set_grows(tmp_path):
    from prefsmith.generation.split import split_prompts
    from prefsmith.schemas.data_configs import SplitConfig

    def run(n, folder):
        path = tmp_path / f"{folder}.jsonl"
        path.write_text("".join(json.dumps({"prompt": f"question {i}"}) + "\n" for i in range(n)))
        result, _, _ = _run(tmp_path / folder, path)
        split = split_prompts(
            {"prompts": result.output},
            config=SplitConfig(heldout_fraction=0.25),
            out_dir=tmp_path / folder,
        )
        train, heldout = split.output, split.more["prompts_heldout"]
        manifest = Manifest.read(split.manifest)
        assert split.manifest == tmp_path / folder / "prompts.split.manifest.json"
        assert manifest.rows_in == manifest.rows_out == n
        return (
            {r["prompt_id"] for r in read_table(train, PROMPTS).to_pylist()},
            {r["prompt_id"] for r in read_table(heldout, PROMPTS).to_pylist()},
        )

    train, heldout = run(400, "small")
    assert not train & heldout and len(train | heldout) == 400
    assert 0.18 < len(heldout) / 400 < 0.32
    train_big, heldout_big = run(800, "big")
    assert heldout <= heldout_big and train <= train_big  # nobody changes side
