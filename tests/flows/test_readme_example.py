"""The README's worked example runs as written: its shell block, with its gen.yaml and
train.yaml, from a folder laid out like a fresh clone (the bundled prompts in flows/data/)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
SECTION = "## A worked example, stage by stage"
FILES = {"generate": "gen.yaml", "train": "train.yaml", "eval": "eval.yaml"}


def worked_example() -> tuple[list[str], list[str]]:
    """(the shell lines, the YAML blocks) of the README's worked-example section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)
    shell = [b for kind, b in blocks if kind == "bash"][0]
    lines = [line for line in shell.splitlines() if line.strip()]
    return lines, [b for kind, b in blocks if kind == "yaml"]


def config_file(block: str) -> str:
    """The file a YAML block is: gen.yaml and train.yaml by their one section, eval.yaml is the
    block with an `evaluate:` section."""
    keys = re.findall(r"^(\w+):", block, flags=re.M)
    return FILES["eval"] if "evaluate" in keys else FILES[keys[0]]


def test_the_section_shows_every_config_its_commands_name():
    lines, yamls = worked_example()
    named = sorted({m for line in lines for m in re.findall(r"-c (\S+\.yaml)", line)})
    shown = sorted(config_file(block) for block in yamls)
    named += [m for line in lines for m in re.findall(r"eval (\S+\.yaml)", line)]
    assert sorted(named) == shown == ["eval.yaml", "gen.yaml", "train.yaml"]


@pytest.mark.slow
def test_the_worked_example_runs_as_written(tmp_path):
    lines, yamls = worked_example()
    (tmp_path / "flows" / "data").mkdir(parents=True)
    shutil.copy(ROOT / "flows/data/quickstart_prompts.jsonl", tmp_path / "flows/data")
    for block in yamls:
        (tmp_path / config_file(block)).write_text(block)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for line in lines:
        done = subprocess.run(
            ["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr
        assert "were trained on" not in done.stderr + done.stdout  # split before generate
    run = tmp_path / "run"
    for table in ("prompts", "responses", "scores", "pairs", "pairs_ref"):
        manifest = json.loads((run / f"{table}.manifest.json").read_text())
        assert manifest["rows_in"] == manifest["rows_out"] + sum(manifest["dropped"].values())
        assert manifest["rows_out"] > 0, table
    final = json.loads((run / "ckpt" / "final.manifest.json").read_text())
    assert final["extra"]["global_step"] == 20
    exported = (run / "pairs.trl.jsonl").read_text().splitlines()
    assert len(exported) == json.loads((run / "pairs.manifest.json").read_text())["rows_out"]
    report = json.loads((run / "eval" / "eval_report.json").read_text())
    heldout = json.loads((run / "prompts.split.manifest.json").read_text())["rows_written"]
    assert report["win_rate"]["n"] == heldout["prompts_heldout"] > 0
