"""Scheduled rebuilds: a real Prefect server on loopback, the rebuild deployment served by
`python -m prefsmith.flows.cli_serve`, one run triggered; its outputs and artifacts are found."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from process_group import stop_process_group

from prefsmith.flows.serve import serve_rebuilds
from prefsmith.schemas.errors import ConfigError
from prefsmith.schemas.io import read_table
from prefsmith.schemas.manifest import Manifest
from prefsmith.schemas.tables import PAIRS

CRON = "0 3 * * *"


def test_serve_without_server_is_one_line_error(tmp_path, monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: None}), pytest.raises(ConfigError) as error:
        serve_rebuilds(tmp_path / "cfg.yaml", cron=CRON)
    assert "prefect server start --host 127.0.0.1" in str(error.value)
    assert "PREFECT_API_URL=http://127.0.0.1:4200/api" in str(error.value)
    assert "\n" not in str(error.value)


def test_bad_cron_is_refused(tmp_path):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}),
        pytest.raises(ConfigError, match="--cron"),
    ):
        serve_rebuilds(tmp_path / "cfg.yaml", cron="every day at 3")


def wait_for_deployment(client, name: str, *, process, timeout_s: float = 120):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited: {process.communicate()[0][-3000:]}")
        try:
            return client.read_deployment_by_name(name)
        except Exception:
            time.sleep(0.5)
    raise AssertionError(f"deployment {name} not registered within {timeout_s} s")


def artifacts_by_key(client, keys: list[str]) -> dict[str, object]:
    """The newest artifact of each key (the server is shared with other tests' builds)."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    found = client.read_artifacts(
        artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)),
        sort=ArtifactSort.CREATED_DESC,
    )
    newest: dict[str, object] = {}
    for artifact in found:
        newest.setdefault(
            artifact.key, json.loads(artifact.data) if artifact.type == "table" else artifact.data
        )
    return newest


@pytest.fixture
def served(pipeline_yaml, on_server):
    """`python -m prefsmith.flows.cli_serve CONFIG --cron ...` in its own process group; always stopped."""
    config = pipeline_yaml("served", n_prompts=4, isolate_stages=False)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefsmith.flows.cli_serve",
            str(config),
            "--cron",
            CRON,
            "--name",
            "nightly",
        ],
        env=on_server,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield config, process
    finally:
        stop_process_group(process, timeout_s=20)


@pytest.mark.slow
def test_served_rebuild_runs_into_a_new_dated_folder(served):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    config, process = served
    with get_client(sync_client=True) as client:
        deployment = wait_for_deployment(client, "rebuild/nightly", process=process)
        assert [s.schedule.cron for s in deployment.schedules] == [CRON]
        assert deployment.parameters == {"config_path": str(config.resolve())}
    flow_run = run_deployment("rebuild/nightly", timeout=300, poll_interval=2)
    assert flow_run.state.is_completed(), flow_run.state

    builds = config.parent / "runs" / "flowtest"
    run_dirs = [
        p for p in builds.iterdir() if p.is_dir() and not p.is_symlink() and p.name != "store"
    ]
    assert len(run_dirs) == 1 and run_dirs[0].name[:8].isdigit()  # dated: YYYYmmdd-HHMMSS
    run_dir = run_dirs[0]
    assert (builds / "latest").resolve() == run_dir.resolve()
    for manifest in ("prompts", "responses", "scores", "pairs"):
        assert Manifest.read(run_dir / f"{manifest}.manifest.json").rows_out > 0
    pairs = read_table(run_dir / "pairs.parquet", PAIRS)
    assert pairs.num_rows > 0

    with get_client(sync_client=True) as client:
        found = artifacts_by_key(
            client, ["build-counts", "build-summary", "pair-quantiles", "build-progress"]
        )
    assert set(found) == {"build-counts", "build-summary", "pair-quantiles", "build-progress"}
    assert run_dir.name in found["build-summary"]
    counts = {row["stage"]: row for row in found["build-counts"]}
    assert counts["pairs"]["rows_out"] == Manifest.read(run_dir / "pairs.manifest.json").rows_out
    quantiles = {row["quantile"]: row for row in found["pair-quantiles"]}
    assert quantiles[1.0]["margin"] == pytest.approx(
        max(pairs.column("margin").to_pylist()), abs=1e-6
    )
    assert found["build-progress"] == 100.0

    # The run the schedule started carries the run summary and is named after its build folder;
    # so is the build subflow under it.
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        summary = artifacts_by_key(client, ["run-summary"])["run-summary"]
        named = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                name=FlowRunFilterName(any_=[f"rebuild-{run_dir.name}", f"{run_dir.name}-build"])
            )
        )
        summary_runs = {a.flow_run_id for a in client.read_artifacts() if a.key == "run-summary"}
    assert flow_run.name == f"rebuild-{run_dir.name}"
    assert {run.name for run in named} == {f"rebuild-{run_dir.name}", f"{run_dir.name}-build"}
    assert flow_run.id in summary_runs  # on the top-level run's own page
    assert str(run_dir.resolve()) in summary and "## Pair scores" in summary
    assert f"| pairs | {counts['pairs']['rows_in']} | {counts['pairs']['rows_out']} |" in summary
    assert not (run_dir / "INCOMPLETE").exists()
