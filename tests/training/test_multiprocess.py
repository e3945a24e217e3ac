"""Multi-process training through `prefsmith.training.launch.launch_train` (torchrun, gloo, on the CPU).

The claim: 2 processes with 2 pairs each train exactly like 1 process with 4 pairs (the same
global batch), because HF Trainer shards one seeded permutation so that rank r takes the r-th
per-device batch (accelerate's BatchSamplerShard), DeepSpeed averages the two ranks' gradients and
the logged loss is the mean over ranks. Measured here (tiny policy, 16 pairs, 6 steps, lr 1e-3,
constant schedule, DPO): the per-step losses of the two runs differ by at most 1e-7 and the final
parameters by 4.6e-7 with ZeRO-2 (2.5e-5 with ZeRO-3, which gathers its shards to save). The
tolerances below leave a margin of 20-100x over those; a 1% change of the learning rate moves the
loss curve by about 1e-3 (negative control), far outside them.

Each launched run is a fresh torchrun (imports of torch, transformers and DeepSpeed on 2 shared
cores: 30-60 s each), hence `slow`. The launch command lines and config checks are fast unit
tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefsmith.schemas.config_base import parse_config
from prefsmith.schemas.errors import ConfigError, StageError
from prefsmith.schemas.io import write_table
from prefsmith.schemas.manifest import Manifest
from prefsmith.schemas.tables import PAIRS
from prefsmith.schemas.train_configs import LaunchConfig, ReferenceConfig, TrainConfig
from prefsmith.training.launch import (
    CONFIG_FILE,
    LOG_FILE,
    launch_command,
    launch_train,
    runs_in_process,
)

LOSS_TOLERANCE = 1e-5  # absolute, per logged step; measured <= 1.2e-7 (ZeRO-2 and ZeRO-3)
# max |param - 1-process run|; measured 4.6e-7 (ZeRO-2), 2.5e-5 (ZeRO-3)
PARAM_TOLERANCE = {"zero2": 1e-5, "zero3": 1e-4}
STEPS = 6  # 16 pairs / global batch 4: crosses an epoch boundary (the sampler's reseeding)


def _config(policy, **overrides) -> TrainConfig:
    base = {
        "policy": str(policy),
        "max_length": 128,
        "max_prompt_length": 64,
        "max_steps": STEPS,
        "per_device_train_batch_size": 4,
        "learning_rate": 1e-3,
        "lr_scheduler_type": "constant",
        "warmup_ratio": 0.0,
        "logging_steps": 1,
        "save_steps": 0,
        "seed": 0,
        "group_by_length": False,  # the length-grouped order depends on the per-device batch
        "deepspeed": "zero2",
    }
    return parse_config(TrainConfig, {**base, **overrides})


def _summary(result) -> dict:
    return json.loads((result.output / "prefsmith_train.json").read_text())


def _losses(result) -> list[float]:
    curve = _summary(result)["loss_curve"]
    assert [step for step, _ in curve] == list(range(1, STEPS + 1))
    return [loss for _, loss in curve]


def _max_param_diff(result, other) -> float:
    from safetensors.torch import load_file

    ours = load_file(str(result.output / "model.safetensors"))
    theirs = load_file(str(other.output / "model.safetensors"))
    assert ours.keys() == theirs.keys()
    return max((ours[k] - theirs[k]).abs().max().item() for k in ours)


# --- launch command lines and config checks (fast) ------------------------------------------


def test_launch_command_torchrun_one_node():
    launch = LaunchConfig(nproc_per_node=2)
    command = launch_command(
        launch,
        pairs=Path("/d/pairs"),
        config_file=Path("/o/t.yaml"),
        out_dir=Path("/o"),
        master_port=29511,
        python="python",
    )
    assert command == [
        "python",
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--nnodes",
        "1",
        "--node_rank",
        "0",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        "29511",
        "-m",
        "prefsmith.training.stage",
        "--pairs",
        "/d/pairs",
        "--config",
        "/o/t.yaml",
        "--out",
        "/o",
    ]


def test_launch_command_torchrun_second_node():
    launch = LaunchConfig(
        nproc_per_node=8, nnodes=2, node_rank=1, master_addr="10.0.0.1", master_port=29500
    )
    command = launch_command(
        launch,
        pairs=Path("/s/pairs"),
        config_file=Path("/s/t.yaml"),
        out_dir=Path("/s/out"),
        master_port=29500,
        python="python",
    )
    assert command[:14] == [
        "python",
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "8",
        "--nnodes",
        "2",
        "--node_rank",
        "1",
        "--master_addr",
        "10.0.0.1",
        "--master_port",
        "29500",
        "-m",
    ]


def test_launch_command_deepspeed_hostfile():
    launch = LaunchConfig(
        launcher="deepspeed", hostfile="/etc/prefsmith/hostfile", nnodes=2, nproc_per_node=8
    )
    command = launch_command(
        launch,
        pairs=Path("/s/pairs"),
        config_file=Path("/s/t.yaml"),
        out_dir=Path("/s/out"),
        master_port=None,
        python="python",
    )
    assert command == [
        "python",
        "-m",
        "deepspeed.launcher.runner",
        "--hostfile",
        "/etc/prefsmith/hostfile",
        "--num_nodes",
        "2",
        "--num_gpus",
        "8",
        "--module",
        "prefsmith.training.stage",
        "--pairs",
        "/s/pairs",
        "--config",
        "/s/t.yaml",
        "--out",
        "/s/out",
    ]
    with_address = launch.model_copy(update={"master_addr": "10.0.0.1"})
    command = launch_command(
        with_address,
        pairs=Path("/p"),
        config_file=Path("/c"),
        out_dir=Path("/o"),
        master_port=29600,
        python="python",
    )
    assert command[9:14] == ["--master_addr", "10.0.0.1", "--master_port", "29600", "--module"]


def test_launch_config_names_every_problem_at_once():
    with pytest.raises(ConfigError) as error:
        parse_config(
            TrainConfig, {"policy": "p", "launch": {"nnodes": 2, "node_rank": 2, "hostfile": "h"}}
        )
    message = str(error.value)
    assert "\n" not in message
    for expected in (
        "only the deepspeed launcher reads a hostfile",
        "node_rank: must be < nnodes",
        "master_addr: nnodes=2",
        "master_port: nnodes > 1",
    ):
        assert expected in message, message
    with pytest.raises(ConfigError, match="needs a hostfile"):
        parse_config(TrainConfig, {"policy": "p", "launch": {"launcher": "deepspeed", "nnodes": 2}})
    with pytest.raises(ConfigError, match="leave node_rank 0"):
        parse_config(
            LaunchConfig, {"launcher": "deepspeed", "nnodes": 2, "node_rank": 1, "hostfile": "h"}
        )
    with pytest.raises(ConfigError, match="master_addr"):
        parse_config(LaunchConfig, {"nnodes": 2, "master_addr": "localhost", "master_port": 1234})
    ok = parse_config(LaunchConfig, {"nnodes": 2, "master_addr": "10.0.0.1", "master_port": 29500})
    assert ok.world_size() == 2


def test_which_configs_run_in_the_callers_process():
    assert runs_in_process(_config("p", deepspeed=None))
    assert runs_in_process(_config("p", deepspeed=None, launch={"nproc_per_node": 1}))
    assert not runs_in_process(_config("p"))  # DeepSpeed needs a rendezvous even for one process
    assert not runs_in_process(_config("p", deepspeed=None, launch={"nproc_per_node": 2}))
    assert not runs_in_process(_config("p", deepspeed=None, launch={"launcher": "deepspeed"}))


def test_a_failing_rank_becomes_one_line_stage_error(tmp_path):
    config = _config("p", launch={"nproc_per_node": 1})
    with pytest.raises(StageError) as error:
        launch_train({"pairs": tmp_path / "missing"}, config=config, out_dir=tmp_path / "out")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("torchrun exited with code 1: error: pairs table not found")
    assert str(tmp_path / "out" / LOG_FILE) in message
    assert "pairs table not found" in (tmp_path / "out" / LOG_FILE).read_text()
    assert parse_config(TrainConfig, _yaml(tmp_path / "out" / CONFIG_FILE)) == config


def _yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


# --- real runs (slow) ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pairs_ref(tiny, tmp_path_factory, pair_rows):
    pytest.importorskip("deepspeed")
    from prefsmith.training.reference import reference_pass

    root = tmp_path_factory.mktemp("mp")
    pairs = write_table(pair_rows(16), root / "pairs.parquet", PAIRS)
    config = parse_config(
        ReferenceConfig, {"model": str(tiny.policy), "max_length": 128, "max_prompt_length": 64}
    )
    return reference_pass({"pairs": pairs}, config=config, out_dir=root / "ref").output


@pytest.fixture(scope="module")
def one_process(tiny, pairs_ref):
    """Run A: torchrun with 1 process (DeepSpeed), 4 pairs per device."""
    out = pairs_ref.parent.parent / "one"
    return launch_train({"pairs": pairs_ref}, config=_config(tiny.policy), out_dir=out)


@pytest.fixture(scope="module")
def two_processes(tiny, pairs_ref):
    """Run B: torchrun with 2 processes, 2 pairs per device (the same global batch of 4)."""
    config = _config(tiny.policy, per_device_train_batch_size=2, launch={"nproc_per_node": 2})
    return launch_train(
        {"pairs": pairs_ref}, config=config, out_dir=pairs_ref.parent.parent / "two"
    )


@pytest.mark.slow
def test_two_processes_train_like_one(one_process, two_processes):
    one, two = _losses(one_process), _losses(two_processes)
    print(f"1 process: {one}\n2 processes: {two}")
    assert one[-1] < one[0] - 0.1  # it learns
    assert two == pytest.approx(one, abs=LOSS_TOLERANCE)
    worst = _max_param_diff(two_processes, one_process)
    print(f"max |param(2 processes) - param(1 process)| = {worst:.2e}")
    assert worst <= PARAM_TOLERANCE["zero2"]
    # the trainer's own metrics are means over all ranks' pairs too, not rank 0's alone
    margins = [
        [e["rewards/margins"] for e in _summary(r)["log_history"] if "rewards/margins" in e]
        for r in (one_process, two_processes)
    ]
    assert len(margins[0]) == STEPS and margins[1] == pytest.approx(margins[0], abs=1e-5)
    for result, world in ((one_process, 1), (two_processes, 2)):
        summary, manifest = _summary(result), Manifest.read(result.manifest)
        assert (summary["world_size"], summary["global_batch"]) == (world, 4)
        assert (manifest.extra["world_size"], manifest.extra["global_batch"]) == (world, 4)
        assert (manifest.rows_in, manifest.rows_out) == (16, 16)
        assert result.quarantine.is_file() and result.output.name == "final"
    log = (two_processes.output.parent / LOG_FILE).read_text()
    # both ranks ran (each logs the global batch), and only rank 0 wrote the outputs
    line = "global batch: 4 pairs per optimizer step = 2 per device x 1 accumulation x 2 processes"
    assert log.count(line) == 2


@pytest.mark.slow
def test_the_comparison_detects_a_one_percent_learning_rate_change(tiny, pairs_ref, one_process):
    """Negative control, run in this process (no launcher: no DeepSpeed, one process)."""
    config = _config(tiny.policy, deepspeed=None, learning_rate=1.01e-3)
    out = pairs_ref.parent.parent / "lr"
    nudged = _losses(launch_train({"pairs": pairs_ref}, config=config, out_dir=out))
    assert not (out / LOG_FILE).exists()  # ran in-process
    one = _losses(one_process)
    gaps = [abs(a - b) for a, b in zip(nudged, one, strict=True)]
    print(f"|loss(lr x 1.01) - loss(run A)| per step: {gaps}")
    assert gaps[0] <= LOSS_TOLERANCE  # same batch and weights before the first update
    assert max(gaps[1:]) > 10 * LOSS_TOLERANCE


@pytest.mark.slow
def test_zero3_two_processes_save_the_gathered_weights(tiny, pairs_ref, one_process):
    config = _config(
        tiny.policy, deepspeed="zero3", per_device_train_batch_size=2, launch={"nproc_per_node": 2}
    )
    result = launch_train(
        {"pairs": pairs_ref}, config=config, out_dir=pairs_ref.parent.parent / "zero3"
    )
    assert _losses(result) == pytest.approx(_losses(one_process), abs=LOSS_TOLERANCE)
    worst = _max_param_diff(result, one_process)  # full tensors, not rank 0's shard
    print(f"ZeRO-3, 2 processes: max |param - 1-process ZeRO-2 run| = {worst:.2e}")
    assert worst <= PARAM_TOLERANCE["zero3"]


@pytest.mark.slow
def test_two_processes_split_the_lora_base_reference(tiny, pairs_ref):
    """LoRA on pairs without reference log-probs: each of 2 ranks computes its half of the
    base's batches and they sum the parts; the run trains like 1 process doing all of it."""
    pairs = pairs_ref.parent.parent / "pairs.parquet"
    adapter = {"r": 4, "alpha": 8, "reference_token_budget": 256}  # several batches to split
    runs = {}
    for world in (1, 2):
        config = _config(
            tiny.policy,
            adapter=adapter,
            per_device_train_batch_size=4 // world,
            launch={"nproc_per_node": world},
        )
        out = pairs_ref.parent.parent / f"lora-{world}"
        runs[world] = launch_train({"pairs": pairs}, config=config, out_dir=out)
    one, two = _losses(runs[1]), _losses(runs[2])
    assert one[-1] < one[0] - 0.01 and two == pytest.approx(one, abs=LOSS_TOLERANCE)
    assert Manifest.read(runs[2].manifest).extra["reference"] == "base, adapter disabled"
    log = (runs[2].output.parent / LOG_FILE).read_text()
    counts = [
        int(log.split(f"base reference: rank {rank} of 2 computed ")[1].split(" ")[0])
        for rank in (0, 1)
    ]
    print(f"base reference sequences by rank: {counts}; losses 1 process {one}, 2 processes {two}")
    assert sum(counts) == 32 and min(counts) > 0, counts  # 16 pairs, 2 sequences each
