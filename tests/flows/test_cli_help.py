"""The CLI's help: `--version`, `-h` everywhere, help text on every option, allowed values listed."""

from __future__ import annotations

from importlib import metadata
from typing import get_args

import click
import pytest
import typer.main
from typer.testing import CliRunner

from prefsmith.flows.cli import app
from prefsmith.schemas.data_configs import GenerateConfig, PairsConfig

runner = CliRunner()
GROUP = typer.main.get_command(app)
COMMANDS = sorted(GROUP.list_commands(click.Context(GROUP)))


def _command(name: str) -> click.Command:
    return GROUP.get_command(click.Context(GROUP), name)


def test_version_prints_the_installed_version():
    result = runner.invoke(app, ["--version"])
    assert (result.exit_code, result.stdout.strip()) == (
        0,
        f"prefsmith {metadata.version('prefsmith')}",
    )


def test_there_are_commands_to_walk():
    assert {"validate", "run", "generate", "export", "inspect", "serve"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_and_argument_has_help(name):
    missing = [p.name for p in _command(name).params if not (getattr(p, "help", "") or "").strip()]
    assert missing == []


def test_the_main_options_have_help():
    assert [p.name for p in GROUP.params if not (p.help or "").strip()] == []


@pytest.mark.parametrize("name", COMMANDS)
def test_dash_h_is_help_on_every_command(name):
    short, long = (runner.invoke(app, [name, flag]) for flag in ("-h", "--help"))
    assert (short.exit_code, long.exit_code) == (0, 0)
    assert short.output == long.output and f"prefsmith {name}" in short.output


@pytest.mark.parametrize(
    ("command", "option", "values"),
    [
        ("generate", "backend", get_args(GenerateConfig.model_fields["backend"].annotation)),
        ("pairs", "strategy", get_args(PairsConfig.model_fields["strategy"].annotation)),
        ("export", "to", ("trl-jsonl", "trl-parquet", "hf")),
    ],
)
def test_choice_options_list_their_values(command, option, values):
    (param,) = [p for p in _command(command).params if p.name == option]
    assert param.help.endswith("one of: " + ", ".join(values))
