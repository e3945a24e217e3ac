"""A stage run in its own process returns the same result, and its errors keep their class."""

from __future__ import annotations

import os
import signal

import pytest

from prefsmith.flows import isolate
from prefsmith.flows.isolate import run_isolated
from prefsmith.generation.prompts import load_prompts
from prefsmith.schemas import errors
from prefsmith.schemas.config_base import parse_config
from prefsmith.schemas.data_configs import PromptsConfig
from prefsmith.schemas.io import read_table
from prefsmith.schemas.tables import PROMPTS


def test_isolated_stage_equals_in_process(tmp_path):
    source = tmp_path / "p.jsonl"
    source.write_text('{"prompt": "x"}\n{"prompt": "y"}\nnot json\n')
    config = parse_config(PromptsConfig, {"path": str(source)})
    here = load_prompts({}, config=config, out_dir=tmp_path / "here")
    there = run_isolated("prompts", {}, config=config, out_dir=tmp_path / "there")
    assert read_table(there["output"], PROMPTS) == read_table(here.output, PROMPTS)
    assert there["manifest"].endswith("prompts.manifest.json")
    assert there["quarantine"].endswith("prompts.quarantine.parquet")


def test_isolated_error_keeps_class_and_message(tmp_path):
    config = parse_config(PromptsConfig, {"path": str(tmp_path / "missing.jsonl")})
    with pytest.raises(errors.InputError, match="prompts file not found"):
        run_isolated("prompts", {}, config=config, out_dir=tmp_path)


def test_a_child_killed_by_a_signal_is_transient_and_an_exit_code_is_not():
    killed = isolate.died("score", -signal.SIGKILL)
    assert isinstance(killed, errors.StageProcessDied) and errors.is_transient(killed)
    assert "SIGKILL" in str(killed) and "out of memory" in str(killed)
    crashed = isolate.died("score", 1)
    assert isinstance(crashed, errors.StageError) and not errors.is_transient(crashed)


@pytest.mark.parametrize(
    ("payload", "cls", "transient"),
    [
        ({"error": "InputError", "message": "m"}, errors.InputError, False),
        ({"error": "ServerUnavailable", "message": "m"}, errors.ServerUnavailable, True),
        (
            {"error": "ConnectionResetError", "message": "m", "transient": True},
            errors.TransientError,
            True,
        ),
        ({"error": "RuntimeError", "message": "m", "transient": False}, errors.StageError, False),
    ],
)
def test_a_child_error_comes_back_with_its_class_or_its_kind(payload, cls, transient):
    error = isolate.rebuilt_error(payload)
    assert type(error) is cls and errors.is_transient(error) is transient


def test_an_unknown_stage_name_is_one_line(tmp_path):
    config = parse_config(PromptsConfig, {"path": str(tmp_path / "x.jsonl")})
    with pytest.raises(errors.ConfigError, match="unknown stage 'promptz'; registered: prompts"):
        run_isolated("promptz", {}, config=config, out_dir=tmp_path)
    assert os.getpid()  # the parent is untouched
