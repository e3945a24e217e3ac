"""Retries count as the registry says, read from the Prefect server's own task-run records: a
deterministic failure (NaN loss in train) runs once; a score stage whose process is SIGKILLed is
run again and finishes with the rows of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid

import psutil
import pytest
from prefect import flow

from prefsmith.flows.tasks import run_stage
from prefsmith.schemas.errors import StageError
from prefsmith.schemas.ids import pair_id, prompt_id
from prefsmith.schemas.io import read_table, write_table
from prefsmith.schemas.tables import PAIRS, PROMPTS, RESPONSES, SCORES

pytestmark = pytest.mark.slow


@flow(name="one-stage")
def one_stage(name: str, inputs: dict, config, out_dir: str, isolate: bool, label: str) -> dict:
    return run_stage(
        name, inputs, config=config, out_dir=out_dir, isolate_stages=isolate, label=label
    )


def task_run(label: str):
    """The one task run named `label` on the test server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=[label]))
        )
    assert len(runs) == 1, runs
    return runs[0]


def test_a_nan_loss_train_is_not_retried(on_server, tiny, tmp_path, monkeypatch):
    from prefsmith.schemas.train_configs import ReferenceConfig, TrainConfig
    from prefsmith.training import trainer as trainer_module
    from prefsmith.training.reference import reference_pass

    lengths = {"max_length": 128, "max_prompt_length": 64}
    pairs = write_table(pair_rows(8), tmp_path / "pairs.parquet", PAIRS)
    ref = ReferenceConfig(model=str(tiny.policy), **lengths)
    pairs_ref = reference_pass({"pairs": pairs}, config=ref, out_dir=tmp_path / "ref").output
    real = trainer_module.combined_loss
    monkeypatch.setattr(
        trainer_module, "combined_loss", lambda b, **kw: (real(b, **kw)[0] * float("nan"), {})
    )
    config = TrainConfig(policy=str(tiny.policy), max_steps=2, save_steps=0, **lengths)
    label = f"train-nan-{uuid.uuid4().hex[:8]}"
    with pytest.raises(StageError, match="non-finite loss"):
        one_stage("train", {"pairs": str(pairs_ref)}, config, str(tmp_path / "ckpt"), False, label)
    run = task_run(label)
    assert run.run_count == 1 and run.state.name == "Failed"


def pair_rows(n: int) -> list[dict]:
    """`n` pairs: a short chosen answer and a longer rejected one."""
    rows = []
    for i in range(n):
        messages = [{"role": "user", "content": f"say something small {i}"}]
        rows.append(
            {
                "pair_id": pair_id(f"r{i}-0", f"r{i}-1"),
                "prompt_id": prompt_id(messages),
                "messages": messages,
                "chosen": "a small thing",
                "rejected": "words " * (i + 3),
                "chosen_response_id": f"r{i}-0",
                "rejected_response_id": f"r{i}-1",
                "score_chosen": 1.0,
                "score_rejected": 0.0,
                "margin": 1.0,
                "strategy": "best_vs_worst",
                "scorer": "test-rule",
            }
        )
    return rows


def kill_first_stage_process(stop: threading.Event, killed: list[int]) -> None:
    """SIGKILL the first `python -m prefsmith.flows.isolate` child of this process, once."""
    me = psutil.Process()
    while not stop.is_set() and not killed:
        for child in me.children(recursive=True):
            try:
                if "prefsmith.flows.isolate" in " ".join(child.cmdline()):
                    time.sleep(0.5)  # inside its stage by now
                    os.kill(child.pid, signal.SIGKILL)
                    killed.append(child.pid)
                    return
            except (psutil.NoSuchProcess, ProcessLookupError):
                continue
        time.sleep(0.05)


def test_a_killed_score_process_is_retried_and_ends_with_the_same_rows(on_server, tiny, tmp_path):
    from prefsmith.schemas.data_configs import ScoreConfig
    from prefsmith.scoring.stage import score

    inputs = scored_inputs(tmp_path)
    config = ScoreConfig(kind="reward_model", model=str(tiny.reward_model), shard_size=4)
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=kill_first_stage_process, args=(stop, killed), daemon=True)
    killer.start()
    label = f"score-killed-{uuid.uuid4().hex[:8]}"
    try:
        result = one_stage("score", inputs, config, str(tmp_path / "flow"), True, label)
    finally:
        stop.set()
        killer.join(timeout=5)
    assert len(killed) == 1  # the first attempt's process died by SIGKILL
    run = task_run(label)
    assert run.run_count == 2 and run.state.name == "Completed"
    direct = score(inputs, config=config, out_dir=tmp_path / "direct")
    assert read_table(result["output"], SCORES).equals(read_table(direct.output, SCORES))


def scored_inputs(tmp_path) -> dict[str, str]:
    """One prompt with 8 responses of growing length."""
    prompt = {"prompt_id": "p", "messages": [{"role": "user", "content": "hi"}]}
    prompts = write_table(
        [{**prompt, "source": "t", "metadata": "{}"}], tmp_path / "prompts.parquet", PROMPTS
    )
    rows = [
        {
            "prompt_id": "p",
            "response_id": f"p-{i}",
            "sample_idx": i,
            "response": "word " * (i + 1),
            "n_tokens": i + 1,
            "finish_reason": "stop",
            "generator": "g",
            "gen_config_hash": "h",
        }
        for i in range(8)
    ]
    responses = write_table(rows, tmp_path / "responses.parquet", RESPONSES)
    return {"responses": str(responses), "prompts": str(prompts)}
