"""Sharded generation and scoring on Ray through Prefect's Ray task runner (a local Ray, CPU).

The build's mapped parts (generation on vLLM, rule scoring) must run as Ray tasks (counted by
Ray's own state API), report their states to the flow's Prefect server, and give exactly the
tables of the same stages called directly without Prefect or Ray.
"""

from __future__ import annotations

import pytest
from flow_oracle import build_without_prefect, latest_states, tables

pytest.importorskip("prefect_ray")
pytestmark = pytest.mark.slow


@pytest.fixture
def local_ray():
    """A local Ray with 2 CPUs and its state API; the task runner joins it instead of owning it."""
    import ray

    ray.init(
        num_cpus=2,
        namespace="prefsmith-test",
        include_dashboard=True,
        configure_logging=False,
        log_to_driver=False,
    )
    try:
        yield ray
    finally:
        ray.shutdown()


def test_ray_build_matches_direct_stages(pipeline_yaml, on_server, local_ray, tiny, tmp_path):
    from prefect.client.orchestration import get_client
    from ray.util.state import list_tasks

    from prefsmith.flows.pipeline import run_config_file

    generate = {
        "model": str(tiny.policy),
        "backend": "vllm",
        "dtype": "float32",
        "max_model_len": 128,
        "shard_size": 1,
        "sampling": {"n": 2, "temperature": 1.0, "max_new_tokens": 12},
    }
    config = pipeline_yaml(
        "ray",
        n_prompts=8,
        isolate_stages=False,
        generate=generate,
        scale={"task_runner": "ray", "shards_per_task": 3},
    )
    outputs = run_config_file(config, run_dir=tmp_path / "on-ray")

    ray_tasks = [t for t in list_tasks(filters=[("name", "=", "stage_part")], limit=100)]
    # generate: 8 shards of 1 prompt → 3 parts; score: 16 responses in shards of 4 → 4 → 2 parts
    assert sorted(t.state for t in ray_tasks) == ["FINISHED"] * 5, ray_tasks
    with get_client(sync_client=True) as client:
        states = latest_states(
            client, [f"generate-part-{i}" for i in range(3)] + ["score-part-0", "score-part-1"]
        )
    assert set(states.values()) == {"Completed"} and len(states) == 5, states

    clean = tmp_path / "clean"
    build_without_prefect(config, clean)
    got, want = tables(tmp_path / "on-ray"), tables(clean)
    for name in want:
        assert got[name].num_rows > 0 and got[name].equals(want[name]), name
    assert outputs["run_dir"] == str(tmp_path / "on-ray")
