"""Two scorers on one responses table through the real pipeline flow: each scores into its own
folder (`scorers/<name>/`), the combine stage ranks by their declared combination, and a build
SIGKILLed while the second scorer is writing its shards, run again into the same folder, ends
with both scorers' rows, the combined scores and the pairs of an uninterrupted build; the first
scorer's task is `Cached` on the rerun and the second skips its finished shards."""

from __future__ import annotations

import pytest
from flow_oracle import finish, kill_after_first_shard, latest_states, run_pipeline
from kill_oracle import differences

from prefsmith.schemas.io import read_frame
from prefsmith.schemas.manifest import Manifest
from prefsmith.schemas.tables import PAIRS, SCORES

pytestmark = pytest.mark.slow


def scorers_yaml(pipeline_yaml, tiny):
    score = [
        {"name": "length", "kind": "rule", "rule": "length_target", "params": {"target": 5}},
        {"name": "rm", "kind": "reward_model", "model": str(tiny.reward_model), "shard_size": 2},
    ]
    combine = {"method": "weighted_sum", "weights": {"length": 1.0, "rm": 0.5}}
    # reuse: false: the clean build's rows in the store would make the resumed one instant
    return pipeline_yaml("scorers", n_prompts=8, score=score, combine=combine, reuse=False)


def test_two_scorers_resume_after_a_kill_to_the_uninterrupted_tables(
    tiny, pipeline_yaml, prefect_server, tmp_path
):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    config = scorers_yaml(pipeline_yaml, tiny)
    clean, resumed = tmp_path / "clean", tmp_path / "resumed"
    finish(run_pipeline(config, clean, env=prefect_server))
    combined = read_frame(clean / "scores.combined.parquet", SCORES)
    assert set(combined["scorer"]) == {"combined-weighted_sum"}
    names = {o["name"] for objs in combined["objectives"] for o in objs}
    assert names == {"scorer/length", "scorer/rm"}
    assert set(read_frame(clean / "pairs.parquet", PAIRS)["scorer"]) == {"combined-weighted_sum"}

    process = run_pipeline(config, resumed, env=prefect_server)
    kill_after_first_shard(process, resumed / "scorers" / "rm" / "scores")
    assert not (resumed / "scores.combined.parquet").exists()
    finish(run_pipeline(config, resumed, env=prefect_server))

    problems = []
    for table in ("scorers/length/scores", "scorers/rm/scores", "scores.combined.parquet"):
        problems += differences(resumed / table, clean / table, SCORES, key="response_id")
    problems += differences(
        resumed / "pairs.parquet", clean / "pairs.parquet", PAIRS, key="pair_id"
    )
    assert problems == []
    rm = Manifest.read(resumed / "scorers" / "rm" / "scores.manifest.json").extra
    assert 1 <= rm["shards_skipped"] < rm["shards"] == 8, rm
    with (
        temporary_settings(updates={PREFECT_API_URL: prefect_server["PREFECT_API_URL"]}),
        get_client(sync_client=True) as client,
    ):
        assert latest_states(client, ["score-length"]) == {"score-length": "Cached"}


def test_evaluation_is_judged_by_the_scorer_that_built_no_pairs(
    tiny, pipeline_yaml, prefect_server, tmp_path
):
    """Pairs from the reward model alone (`single`); the length rule, which built none, judges
    the tuned policy, and the report shows both scorers' win rates on the same samples."""
    import json

    from flow_oracle import tiny_train

    score = [
        {"name": "length", "kind": "rule", "rule": "length_target", "params": {"target": 5}},
        {"name": "rm", "kind": "reward_model", "model": str(tiny.reward_model)},
    ]
    config = pipeline_yaml(
        "judged",
        n_prompts=8,
        heldout_fraction=0.25,
        isolate_stages=False,
        score=score,
        combine={"method": "single", "scorer": "rm"},
        train=tiny_train(tiny.policy, steps=2),
        evaluate={"sampling": {"n": 2, "temperature": 1.0, "max_new_tokens": 8}, "n_boot": 100},
    )
    run = tmp_path / "run"
    finish(run_pipeline(config, run, env=prefect_server))
    report = json.loads((run / "eval" / "eval_report.json").read_text())
    assert report["judge"] == {"name": "length", "training_scorer": False, "warning": None}
    rows = {row["scorer"]: row for row in report["by_scorer"]}
    assert set(rows) == {"length", "rm"} and rows["rm"]["training_scorer"]
    assert rows["length"]["rate"] == report["win_rate"]["rate"]
    judged = read_frame(run / "eval" / "tuned" / "scores", SCORES)
    assert set(judged["scorer"]) == {"length"}  # the headline's scores are the judge's
    other = read_frame(run / "eval" / "tuned" / "scorers" / "rm" / "scores", SCORES)
    assert other.height == judged.height
