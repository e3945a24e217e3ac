"""`prefsmith reference` and `prefsmith train` on input that is not a whole Parquet file: one
line naming the file and the fix, exit code 2, before any model loads (never a pyarrow
traceback)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from prefsmith.flows.cli import app
from prefsmith.schemas.io import write_table
from prefsmith.schemas.tables import PAIRS

CASES = {  # name -> (file name, what the line says is wrong)
    "csv": ("pairs.csv", "a CSV file, not Parquet"),
    "jsonl": ("pairs.jsonl", "a JSONL file, not Parquet"),
    "garbage": ("pairs.parquet", "not a Parquet file (no PAR1 magic bytes)"),
    "truncated": ("pairs.parquet", "truncated, or still being written"),
    "empty": ("pairs.parquet", "the file is empty"),
}


def bad_input(kind: str, folder, rows) -> object:
    name, _ = CASES[kind]
    path = folder / name
    if kind == "csv":
        path.write_text("prompt,chosen,rejected\nhi,yes,no\n")
    elif kind == "jsonl":
        path.write_text('{"prompt": "hi", "chosen": "yes", "rejected": "no"}\n')
    elif kind == "garbage":
        path.write_bytes(b"\x00\x01 these bytes are not a table " * 20)
    elif kind == "truncated":
        whole = write_table(rows, folder / "whole.parquet", PAIRS).read_bytes()
        path.write_bytes(whole[: len(whole) // 2])
    else:
        path.write_bytes(b"")
    return path


@pytest.mark.parametrize("command", ["reference", "train"])
@pytest.mark.parametrize("kind", sorted(CASES))
def test_not_parquet_is_one_line_and_exit_2(command, kind, tiny, tmp_path, pair_rows):
    path = bad_input(kind, tmp_path, pair_rows(4))
    model = ["--model" if command == "reference" else "--policy", str(tiny.policy)]
    result = CliRunner().invoke(app, [command, str(path), "--out", str(tmp_path / "out"), *model])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith(f"error: pairs table {path}: ")
    assert CASES[kind][1] in lines[0] and "prefsmith import" in lines[0]


def test_a_truncated_shard_in_a_folder_is_named(tiny, tmp_path, pair_rows):
    folder = tmp_path / "pairs"
    folder.mkdir()
    write_table(pair_rows(3), folder / "a.parquet", PAIRS)
    bad = bad_input("truncated", tmp_path, pair_rows(3))
    bad.rename(folder / "b.parquet")
    args = ["reference", str(folder), "--out", str(tmp_path / "out"), "--model", str(tiny.policy)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert str(folder / "b.parquet") in result.output
