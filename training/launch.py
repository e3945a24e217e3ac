"""Start the train stage on several processes or nodes: torchrun, or DeepSpeed's launcher.

`launch_train` is the call a flow makes. With one process and no DeepSpeed it runs
`prefsmith.training.stage.train` in the caller's process. Otherwise it writes the config beside the outputs
(`out_dir/train.launch.yaml`), runs the launcher with `-m prefsmith.training.stage` on every rank, streams
the ranks' output to stderr and to `out_dir/train.launch.log`, and reads back the manifest that
global rank 0 wrote. DeepSpeed needs a rendezvous even for one process (otherwise it looks for
mpi4py), so a config with `deepspeed` set always goes through a launcher.

| `TrainConfig.launch`                  | command (`launch_command`)                                   |
|---------------------------------------|--------------------------------------------------------------|
| None, `deepspeed` None                | none: `train(...)` in this process                            |
| None, `deepspeed` set                 | torchrun, 1 process, 127.0.0.1, a free port                   |
| `launcher: torchrun`                  | `python -m torch.distributed.run --nproc_per_node N --nnodes M --node_rank K --master_addr A --master_port P -m prefsmith.training.stage ...`, run on every node |
| `launcher: deepspeed`                 | `python -m deepspeed.launcher.runner [--hostfile H] --num_nodes M --num_gpus N [--master_addr A] [--master_port P] --module prefsmith.training.stage ...`, run on the head node only |
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import signal
import socket
import subprocess
import sys
from collections import deque
from pathlib import Path

import yaml

from prefsmith.schemas.errors import ConfigError, StageError
from prefsmith.schemas.locks import folder_lock
from prefsmith.schemas.manifest import Inputs, Manifest, StageResult, input_path, manifest_path
from prefsmith.schemas.train_configs import LaunchConfig, TrainConfig

logger = logging.getLogger(__name__)

CONFIG_FILE = "train.launch.yaml"
LOG_FILE = "train.launch.log"
TAIL_LINES = 6
# A rank's own one-line error (`prefsmith.training.stage.main` prints "error: ...") or an exception line;
# torch prefixes a worker's traceback lines with "[rankN]:".
_CAUSE = re.compile(r"^(?:\[rank\d+\]:\s*)?((?:error: |[\w.]*(?:Error|Exception): ).+)$")


def runs_in_process(config: TrainConfig) -> bool:
    """One process and no DeepSpeed: `train` can run here, no launcher needed."""
    launch = config.launch
    single = launch is None or (launch.launcher == "torchrun" and launch.world_size() == 1)
    return single and config.deepspeed is None


def free_port() -> int:
    """A TCP port free on this host now (the rendezvous of a one-node job)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_command(
    launch: LaunchConfig,
    *,
    pairs: Path,
    config_file: Path,
    out_dir: Path,
    master_port: int | None,
    python: str = sys.executable,
) -> list[str]:
    """The launcher's argv for this node. `master_port` None is allowed only where the
    launcher has a default (deepspeed); torchrun needs one (`launch_train` picks a free port)."""
    stage = [
        "prefsmith.training.stage",
        "--pairs",
        str(pairs),
        "--config",
        str(config_file),
        "--out",
        str(out_dir),
    ]
    if launch.launcher == "torchrun":
        if master_port is None:
            raise ValueError("torchrun needs a master_port")
        return [
            python,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(launch.nproc_per_node),
            "--nnodes",
            str(launch.nnodes),
            "--node_rank",
            str(launch.node_rank),
            "--master_addr",
            launch.master_addr or "127.0.0.1",
            "--master_port",
            str(master_port),
            "-m",
            *stage,
        ]
    command = [python, "-m", "deepspeed.launcher.runner"]
    if launch.hostfile is not None:
        command += ["--hostfile", launch.hostfile]
    command += ["--num_nodes", str(launch.nnodes), "--num_gpus", str(launch.nproc_per_node)]
    if launch.master_addr is not None:
        command += ["--master_addr", launch.master_addr]
    if master_port is not None:
        command += ["--master_port", str(master_port)]
    return [*command, "--module", *stage]


def failure_summary(lines: list[str], *, returncode: int, launcher: str, log: Path) -> str:
    """One line: the ranks' last error line, the log's last lines, and where the full log is."""
    causes = [
        m.group(1)
        for line in lines
        if (m := _CAUSE.match(line.strip())) and "ChildFailedError" not in line
    ]
    shown = [line.strip() for line in lines if line.strip().strip("=-")]  # drop ==== rules
    cause = f": {causes[-1]}" if causes else ""
    tail = " | ".join(shown[-TAIL_LINES:])
    return f"{launcher} exited with code {returncode}{cause}; last lines: {tail} (full log: {log})"


_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:
    """In the launcher's process (Linux): SIGTERM when the caller dies; the launcher then stops
    its ranks. Runs between fork and exec, so it only makes one system call."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _stop(process: subprocess.Popen) -> None:
    process.terminate()  # the launcher forwards it to the ranks
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_streaming(command: list[str], *, log: Path) -> tuple[int, list[str]]:
    """Run `command`, copying its output to stderr and `log`; (exit code, last lines)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    tail: deque[str] = deque(maxlen=200)
    with (
        log.open("w") as sink,
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=env,
            preexec_fn=_die_with_parent,
        ) as process,
    ):
        try:
            for line in process.stdout:
                sys.stderr.write(line)
                sink.write(line)
                tail.append(line.rstrip("\n"))
            return process.wait(), list(tail)
        except BaseException:
            _stop(process)
            raise


def _read_back(out_dir: Path, *, launch: LaunchConfig) -> StageResult:
    """The StageResult from the manifest rank 0 wrote (on node 0; other nodes trust node 0)."""
    from prefsmith.training.stage import FINAL

    manifest = manifest_path(out_dir / FINAL)
    if launch.node_rank != 0:
        logger.info("node %d finished; node 0 wrote %s", launch.node_rank, manifest)
        return StageResult(out_dir / FINAL, out_dir / "final.quarantine.parquet", manifest)
    if not manifest.is_file():
        raise StageError(f"{launch.launcher} finished but rank 0 wrote no manifest at {manifest}")
    outputs = Manifest.read(manifest).outputs
    return StageResult(Path(outputs["checkpoint"]), Path(outputs["quarantine"]), manifest)


def launch_train(inputs: Inputs, *, config: TrainConfig, out_dir: str | Path) -> StageResult:
    """Train on `inputs["pairs"]` with `config.launch`'s processes and nodes (module docstring),
    holding `out_dir`'s train lock (two trainers never write one checkpoint folder); a run
    already finished there is returned without launching anything."""
    from prefsmith.training.stage import finished_run, train

    with folder_lock(out_dir, "train"):
        if runs_in_process(config):
            return train(inputs, config=config, out_dir=out_dir)
        pairs = input_path(inputs, "pairs")
        done = finished_run(Path(pairs), config=config, out_dir=Path(out_dir).resolve())
        return done or _launch(Path(pairs), config=config, out_dir=out_dir)


def _launch(pairs: Path, *, config: TrainConfig, out_dir: str | Path) -> StageResult:
    """Write the config beside the outputs, run the launcher, read back rank 0's manifest."""
    launch = config.launch or LaunchConfig()
    if launch.hostfile is not None and not Path(launch.hostfile).is_file():
        raise ConfigError(f"launch.hostfile: file not found: {launch.hostfile}")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    config_file = out_dir / CONFIG_FILE
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    port = launch.master_port or (free_port() if launch.nnodes == 1 else None)
    command = launch_command(
        launch,
        pairs=Path(pairs).resolve(),
        config_file=config_file,
        out_dir=out_dir,
        master_port=port,
    )
    logger.info(
        "%d processes x %d nodes: %s", launch.nproc_per_node, launch.nnodes, " ".join(command)
    )
    returncode, tail = run_streaming(command, log=out_dir / LOG_FILE)
    if returncode != 0:
        raise StageError(
            failure_summary(
                tail, returncode=returncode, launcher=launch.launcher, log=out_dir / LOG_FILE
            )
        )
    return _read_back(out_dir, launch=launch)
