"""The CLI: user mistakes end in one line on stderr and exit code 2; shipped configs load."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from prefsmith.flows.cli import app

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, list(args))


@pytest.mark.parametrize(
    "example", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name
)
def test_every_shipped_config_validates(example):
    """Keys and values only: the examples name model folders of a GPU machine (preflight's
    file checks are tests/flows/test_preflight.py's)."""
    result = _run("validate", "--schema-only", str(example))
    assert result.exit_code == 0, result.output


def test_bad_config_names_every_field_one_per_line(tmp_path):
    text = (REPO / "examples" / "llama3-armorm.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("n: 5,", "n: five,").replace("min_margin:", "min_margn:"))
    result = _run("validate", "--schema-only", str(bad))
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [
        "error: generate.sampling.n: Input should be a valid integer, unable to parse string as "
        "an integer (got 'five')",
        "error: pairs.min_margn: unknown key (did you mean 'min_margin'?)",
    ]
    assert "Traceback" not in result.output


def test_missing_input_is_one_line(tmp_path):
    result = _run("prompts", str(tmp_path / "none.jsonl"), "--out", str(tmp_path))
    assert result.exit_code == 2
    assert result.output.strip() == f"error: prompts file not found: {tmp_path / 'none.jsonl'}"


def test_prompts_command_writes_table_and_manifest(tmp_path):
    source = tmp_path / "p.jsonl"
    source.write_text('{"prompt": "a"}\n{"prompt": "b"}\n{"prompt": "a"}\n')
    result = _run("prompts", str(source), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    from prefsmith.schemas.manifest import Manifest

    manifest = Manifest.read(tmp_path / "out" / "prompts.manifest.json")
    assert (manifest.rows_in, manifest.rows_out, manifest.dropped) == (
        3,
        2,
        {"duplicate_merged": 1},
    )
