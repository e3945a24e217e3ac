"""Two on-policy rounds through the real pipeline flow on the tiny models (prefsmith.flows.rounds):
round 2 samples with round 1's checkpoint (its revision in every response row), trains from it
against the base's reference, is evaluated against the base and against round 1, and each round
is a Prefect flow run named after it. The build SIGKILLed inside round 2 and run again into the
same folder ends with every table, checkpoint and report of an uninterrupted build, round 1's
sampling stages `Cached` and round 2's finished shards skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flow_oracle import finish, kill_after_first_shard, run_pipeline, tiny_train
from kill_oracle import same_build

from prefsmith.schemas.ids import model_revision
from prefsmith.schemas.io import read_table
from prefsmith.schemas.manifest import Manifest
from prefsmith.schemas.tables import PAIRS_WITH_REFERENCE, RESPONSES

pytestmark = pytest.mark.slow

STEPS = 4


def rounds_yaml(pipeline_yaml, policy: Path) -> Path:
    overrides = {
        "heldout_fraction": 0.25,
        "isolate_stages": False,  # one process per build: no stage start-ups to pay 3 times
        "train": tiny_train(policy, steps=STEPS),
        "evaluate": {"sampling": {"n": 2, "temperature": 1.0, "max_new_tokens": 8}, "n_boot": 100},
        "rounds": {"count": 2},
        "reuse": False,  # the clean build's rows in the store would make the resumed one instant
    }
    return pipeline_yaml("rounds", n_prompts=12, **overrides)


def flow_task_states(env: dict[str, str], flow_run_name: str) -> dict[str, set[str]]:
    """State names of the task runs of the newest flow run called `flow_run_name`, by task name."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterName
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}),
        get_client(sync_client=True) as client,
    ):
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[flow_run_name])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
        assert runs, f"no flow run named {flow_run_name}"
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[runs[0].id]))
        )
    states: dict[str, set[str]] = {}
    for run in tasks:
        states.setdefault(run.name, set()).add(run.state.name)
    return states


def check_on_policy(build: Path, *, base: Path) -> None:
    """Round 2 sampled with round 1's checkpoint, trained from it, against the base's reference."""
    first, second = (json.loads((build / f"round-{t}" / "round.json").read_text()) for t in (1, 2))
    checkpoint = build / "round-1" / "checkpoint" / "final"
    assert second["parent_checkpoint"] == first["checkpoint"] == str(checkpoint)
    assert first["parent_checkpoint"] is None and second["parent_round"] == 1
    generators = [
        set(read_table(build / f"round-{t}" / "responses", RESPONSES)["generator"].to_pylist())
        for t in (1, 2)
    ]
    assert generators == [
        {f"{base.name}@{model_revision(base)}"},
        {f"final@{model_revision(checkpoint)}"},
    ]
    assert model_revision(checkpoint) != model_revision(base)
    for t in (1, 2):  # reference: base, every round
        pairs = read_table(build / f"round-{t}" / "pairs_ref.parquet", PAIRS_WITH_REFERENCE)
        (ref_model,) = set(pairs["ref_model"].to_pylist())
        name, revision = ref_model.split("@")
        assert name == base.name and model_revision(base).startswith(revision), ref_model
    train = Manifest.read(build / "round-2" / "checkpoint" / "final.manifest.json")
    assert train.config["policy"] == str(checkpoint)
    vs_previous = json.loads(
        (build / "round-2" / "eval" / "vs-previous" / "eval_report.json").read_text()
    )
    assert vs_previous["labels"] == {"tuned": "round 2", "base": "round 1"}
    rows = json.loads((build / "rounds.json").read_text())["rounds"]
    assert [row["round"] for row in rows] == [1, 2]
    assert rows[0]["win_vs_previous"] is None
    assert rows[1]["win_vs_previous"]["rate"] == vs_previous["win_rate"]["rate"]


def test_two_rounds_killed_in_round_two_resume_to_the_uninterrupted_build(
    tiny, pipeline_yaml, prefect_server, tmp_path
):
    config = rounds_yaml(pipeline_yaml, tiny.policy)
    clean, resumed = tmp_path / "clean", tmp_path / "resumed"
    finish(run_pipeline(config, clean, env=prefect_server), timeout_s=600)
    check_on_policy(clean, base=tiny.policy)

    process = run_pipeline(config, resumed, env=prefect_server)
    kill_after_first_shard(process, resumed / "round-2" / "responses", timeout_s=600)
    assert not (resumed / "round-2" / "round.json").exists()
    finish(run_pipeline(config, resumed, env=prefect_server), timeout_s=600)

    for t in (1, 2):
        assert same_build(resumed / f"round-{t}", clean / f"round-{t}", steps=STEPS) == [], t
    reports = [
        json.loads((w / "round-2" / "eval" / "vs-previous" / "eval_report.json").read_text())
        for w in (resumed, clean)
    ]
    assert reports[0] == reports[1]
    generate = Manifest.read(resumed / "round-2" / "responses.manifest.json").extra
    assert 1 <= generate["shards_skipped"] < generate["shards_total"], generate
    first_round = flow_task_states(prefect_server, f"{resumed.name}-round-1")
    assert first_round["generate"] == first_round["score"] == {"Cached"}, first_round
    assert flow_task_states(prefect_server, f"{resumed.name}-round-2")["generate"] == {"Completed"}


def test_two_rounds_with_a_lora_adapter_chain_through_merged_checkpoints(
    tiny, pipeline_yaml, prefect_server, tmp_path
):
    """With `train.adapter`, round 1 saves a LoRA adapter over the base; round 2 samples from
    round 1's merged model (its revision in every response row), trains a fresh adapter over it
    (the adapter's base is round 1's merged folder), is evaluated from its own merged model, and
    the rounds table compares it with round 1."""
    train = {**tiny_train(tiny.policy, steps=STEPS), "adapter": {"r": 4, "alpha": 8}}
    overrides = {"heldout_fraction": 0.25, "isolate_stages": False, "train": train}
    overrides |= {"rounds": {"count": 2}, "reuse": False}
    overrides["evaluate"] = {"sampling": {"n": 2, "max_new_tokens": 8}, "n_boot": 100}
    build = tmp_path / "build"
    finish(
        run_pipeline(pipeline_yaml("lora", n_prompts=12, **overrides), build, env=prefect_server),
        timeout_s=600,
    )

    first, second = (build / f"round-{t}" / "checkpoint" / "final" for t in (1, 2))
    bases = [json.loads((f / "adapter_config.json").read_text()) for f in (first, second)]
    assert [b["base_model_name_or_path"] for b in bases] == [
        str(tiny.policy),
        str(first / "merged"),
    ]
    responses = read_table(build / "round-2" / "responses", RESPONSES)
    assert set(responses["generator"].to_pylist()) == {f"merged@{model_revision(first / 'merged')}"}
    train_manifest = Manifest.read(build / "round-2" / "checkpoint" / "final.manifest.json")
    assert train_manifest.config["policy"] == str(first / "merged")
    assert model_revision(second / "merged") != model_revision(first / "merged")
    rows = json.loads((build / "rounds.json").read_text())["rounds"]
    vs_previous = json.loads(
        (build / "round-2" / "eval" / "vs-previous" / "eval_report.json").read_text()
    )
    assert rows[1]["win_vs_previous"]["rate"] == vs_previous["win_rate"]["rate"]
    assert vs_previous["win_rate"]["n"] > 0
    evaluated = read_table(build / "round-2" / "eval" / "tuned" / "responses", RESPONSES)
    assert set(evaluated["generator"].to_pylist()) == {
        f"merged@{model_revision(second / 'merged')}"
    }
