"""`generate.model: latest` (prefsmith.flows.latest): resolved to the last good build's final
checkpoint (its last round's with rounds), the base before any build has one, recorded in the
build; and through the real pipeline flow, the second build of a pipeline samples with the
first build's checkpoint (its revision in every response row)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from flow_oracle import finish, run_pipeline, tiny_train

from prefsmith.flows.latest import build_checkpoint, resolve_latest
from prefsmith.schemas.errors import ConfigError
from prefsmith.schemas.ids import model_revision
from prefsmith.schemas.io import read_table
from prefsmith.schemas.pipeline_config import PipelineConfig
from prefsmith.schemas.tables import RESPONSES


def config(tmp_path, *, policy: str | None) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "name": "nightly",
            "out_dir": str(tmp_path / "runs"),
            "prompts": {"path": "p.jsonl"},
            "generate": {"model": "latest", "revision": "ignored"},
            "score": {"kind": "rule", "rule": "length_target", "params": {"target": 5}},
            "train": {"policy": policy, "max_length": 96, "max_prompt_length": 48}
            if policy
            else None,
        }
    )


def point_latest_at(tmp_path, name: str) -> Path:
    build = tmp_path / "runs" / "nightly" / name
    build.mkdir(parents=True)
    link = build.parent / "latest"
    link.unlink(missing_ok=True)
    os.symlink(name, link)
    return build


def test_before_any_build_latest_is_the_base(tmp_path, tiny):
    resolved, record = resolve_latest(config(tmp_path, policy=str(tiny.policy)))
    assert resolved.generate.model == str(tiny.policy) and resolved.generate.revision is None
    assert record["revision"] == model_revision(tiny.policy) and "train.policy" in record["source"]
    with pytest.raises(ConfigError, match="generate.model: latest: no build"):
        resolve_latest(config(tmp_path, policy=None))


def test_latest_is_the_last_build_checkpoint_or_its_last_round(tmp_path, tiny):
    plain = point_latest_at(tmp_path, "b1")
    assert build_checkpoint(plain) is None  # no finished training there
    (plain / "checkpoint").mkdir()
    (plain / "checkpoint" / "final.manifest.json").write_text("{}")
    assert build_checkpoint(plain) == plain / "checkpoint" / "final"
    rounds = point_latest_at(tmp_path, "b2")
    for t, folder in ((2, "r2"), (10, "r10")):  # round 10 is the last, by number
        (rounds / f"round-{t}").mkdir()
        (rounds / f"round-{t}" / "round.json").write_text(json.dumps({"checkpoint": folder}))
    assert build_checkpoint(rounds) == Path("r10")
    os.symlink(str(tiny.policy), rounds / "round-10" / "model")
    (rounds / "round-10" / "round.json").write_text(
        json.dumps({"checkpoint": str(rounds / "round-10" / "model")})
    )
    resolved, record = resolve_latest(config(tmp_path, policy="base"))
    assert resolved.generate.model == str(rounds / "round-10" / "model")
    assert record["source"] == "checkpoint of build b2"


def nightly_yaml(pipeline_yaml, policy: Path) -> Path:
    train = tiny_train(policy, steps=2)
    path = pipeline_yaml("nightly", n_prompts=6, isolate_stages=False, train=train)
    data = yaml.safe_load(path.read_text())
    data["generate"]["model"] = "latest"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.slow
def test_second_build_samples_with_the_first_builds_checkpoint(tiny, pipeline_yaml, prefect_server):
    config_path = nightly_yaml(pipeline_yaml, tiny.policy)
    builds = Path(yaml.safe_load(config_path.read_text())["out_dir"]) / "flowtest"
    finish(run_pipeline(config_path, builds / "b1", env=prefect_server))
    finish(run_pipeline(config_path, builds / "b2", env=prefect_server))
    first = json.loads((builds / "b1" / "generator.json").read_text())
    second = json.loads((builds / "b2" / "generator.json").read_text())
    assert first["model"] == str(tiny.policy)
    checkpoint = builds / "b1" / "checkpoint" / "final"
    assert second["model"] == str(checkpoint) and second["revision"] == model_revision(checkpoint)
    generators = set(read_table(builds / "b2" / "responses", RESPONSES)["generator"].to_pylist())
    assert generators == {f"final@{model_revision(checkpoint)}"}
    assert (builds / "latest").resolve() == (builds / "b2").resolve()
