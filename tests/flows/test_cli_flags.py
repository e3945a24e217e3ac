"""Flags read as flags in every `--help`: no `<bool>` type column, while options that take a
value keep theirs (the control: the patch hides flags' types only)."""

from __future__ import annotations

import click
import pytest
import typer.main
from typer.testing import CliRunner

from prefsmith.flows.cli import app

runner = CliRunner()
GROUP = typer.main.get_command(app)
COMMANDS = sorted(GROUP.list_commands(click.Context(GROUP)))


@pytest.mark.parametrize("name", [None, *COMMANDS])
def test_no_bool_metavar_in_help(name):
    args = [name, "--help"] if name else ["--help"]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "--help" in result.output
    assert "<bool>" not in result.output, result.output


def test_value_options_still_show_their_type():
    output = runner.invoke(app, ["validate", "--help"], env={"COLUMNS": "200"}).output
    assert "--schema-only" in output and "<path>" in output
    output = runner.invoke(app, ["inspect", "--help"], env={"COLUMNS": "200"}).output
    assert "<float>" in output and "--no-html" in output
