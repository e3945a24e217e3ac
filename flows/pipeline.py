"""The pipeline flow: build_dataset (prompts → split → generate → score → pairs → reference),
train and evaluate (prefsmith.flows.build, prefsmith.flows.evaluate), or the rounds flow
(prefsmith.flows.rounds) with `rounds:`, into a dated run folder whose `latest` pointer moves
only when the build succeeds.

`python -m prefsmith.flows.pipeline CONFIG.yaml [--run-dir DIR]` runs the pipeline into a chosen
folder: running it again into the same folder after a crash reuses finished stages (Prefect
cache) and finished shards (the stages' own resume).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

if __name__ == "__main__":  # `python -m`: prefsmith's Prefect defaults before Prefect loads
    from prefsmith.flows.prefect_setup import use_prefect_defaults

    use_prefect_defaults()

from prefect import flow

from prefsmith.flows.artifacts import publish_run_summary
from prefsmith.flows.build import build_dataset, train
from prefsmith.flows.console import log_runs_in
from prefsmith.flows.evaluate import evaluate
from prefsmith.flows.incomplete import clear_incomplete, mark_incomplete, refuse_incomplete
from prefsmith.flows.latest import record_generator, resolve_latest
from prefsmith.flows.prefect_setup import prefect_server_errors
from prefsmith.flows.rounds import run_rounds
from prefsmith.flows.run_names import rename_this_run, stage_run_name
from prefsmith.flows.shards import task_runner
from prefsmith.flows.tasks import RESULT_SERIALIZER, home_results, results_in
from prefsmith.schemas.config_base import parse_config, read_yaml
from prefsmith.schemas.errors import ConfigError, PrefsmithError, one_line
from prefsmith.schemas.locks import folder_lock
from prefsmith.schemas.pipeline_config import PipelineConfig


def new_run_dir(config: PipelineConfig) -> Path:
    """`<out_dir>/<name>/<UTC timestamp>`, with a counter if two builds start in one second.

    The generated folder stays under `out_dir`: `<out_dir>/<name>` must resolve strictly inside
    it (a `name` of `.` or `..` is refused by the config already; this also catches a name
    folder that is a symlink out), else ConfigError with one line.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    parent = Path(config.out_dir) / config.name
    root = Path(config.out_dir).resolve()
    if root not in parent.resolve().parents:
        raise ConfigError(
            f"name {config.name!r}: the run folder {parent} is not inside out_dir {root}; "
            "use a plain folder name"
        )
    parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1000):
        run_dir = parent / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise FileExistsError(f"no free run folder name under {parent} for {stamp}")


def checked_run_dir(run_dir: str | Path, *, config: PipelineConfig) -> Path:
    """An explicit `--run-dir`, resolved, or ConfigError with one line.

    Any folder the user names is accepted (resolved first, so `.` is the current folder by its
    real name and `latest` is swapped beside it, in its parent), except one that holds builds
    rather than being one: the filesystem root, `out_dir`, `<out_dir>/<name>` or any folder
    above them (every ancestor of `<out_dir>/<name>/latest`), or a folder that holds a `latest`
    pointer itself (another pipeline's name folder).
    """
    path = Path(run_dir).resolve()
    latest = (Path(config.out_dir) / config.name).resolve() / "latest"
    holds_builds = path == path.parent or path in latest.parents
    if holds_builds or (path / "latest").is_symlink():
        raise ConfigError(
            f"--run-dir {run_dir}: {path} holds run folders (and their `latest` pointer); "
            f"name a folder for this one build, e.g. {latest.parent / 'my-build'}"
        )
    return path


def point_latest(run_dir: Path) -> Path:
    """Atomically repoint `<run_dir>/../latest` at `run_dir` (a symlink swapped by rename);
    never at a folder marked INCOMPLETE (flows.incomplete)."""
    refuse_incomplete(run_dir)
    link = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest.{os.getpid()}"
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(run_dir.name, tmp)
    os.replace(tmp, link)
    return link


@flow(  # its failure record (a one-line error) as JSON under PREFECT_HOME, not a pickle
    name="pipeline",
    result_serializer=RESULT_SERIALIZER,
    result_storage=home_results(),
    persist_result=False,
)
def pipeline(config: PipelineConfig, run_dir: str | None = None) -> dict[str, str]:
    """All stages into a new dated run folder; `latest` moves only if everything succeeded."""
    run_path = checked_run_dir(run_dir, config=config) if run_dir else new_run_dir(config)
    run_path.mkdir(parents=True, exist_ok=True)
    log_runs_in(run_path)  # quiet terminal: Prefect's run records to <run>/logs/prefect.log
    # One writer per run folder (a second `run --run-dir` stops naming this one, or waits);
    # cached results as JSON under the run folder.
    with folder_lock(run_path, "run"), results_in(run_path):
        mark_incomplete(run_path)  # removed only on success: a killed build stays marked
        rename_this_run(run_path.name)
        try:
            config, latest = resolve_latest(config)
            generator = record_generator(run_path, latest) if latest else None
            outputs = _all_stages(config, run_path)
            if generator is not None:
                outputs["generator"] = str(generator)
        except Exception as error:  # the marker says why, for whoever finds the folder
            mark_incomplete(
                run_path, reason=f"the build failed: {type(error).__name__}: {one_line(error)}"
            )
            raise
        outputs["run_dir"] = str(run_path)
        clear_incomplete(run_path)
        outputs["latest"] = str(point_latest(run_path))
        publish_run_summary(outputs)
    return outputs


def _all_stages(config: PipelineConfig, run_path: Path) -> dict[str, str]:
    """build_dataset, then train and evaluate when configured, as subflows named per stage;
    with `rounds:`, the rounds flow instead."""
    if config.rounds is not None:
        return run_rounds(config, run_path)
    build = build_dataset.with_options(
        task_runner=task_runner(config.scale), flow_run_name=stage_run_name("build")
    )
    outputs = build(config, str(run_path))
    if config.train is not None:
        trainer = train.with_options(flow_run_name=stage_run_name("train"))
        outputs["checkpoint"] = trainer(config, outputs["pairs_ref"], str(run_path))
        if config.evaluate is not None:
            evaluator = evaluate.with_options(flow_run_name=stage_run_name("evaluate"))
            outputs["eval_report"] = evaluator(
                config, outputs["checkpoint"], outputs["prompts_heldout"], str(run_path)
            )
    return outputs


def run_config_file(config_path: Path, *, run_dir: Path | None = None) -> dict[str, str]:
    """Validate a pipeline YAML, then run the pipeline flow (into `run_dir` if given)."""
    config = parse_config(PipelineConfig, read_yaml(config_path))
    return pipeline(config, run_dir=str(run_dir) if run_dir else None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m prefsmith.flows.pipeline", description="run the pipeline"
    )
    parser.add_argument("config", type=Path, help="pipeline YAML")
    parser.add_argument("--run-dir", type=Path, default=None, help="default: a new dated folder")
    args = parser.parse_args(argv)
    try:
        with prefect_server_errors():
            print(run_config_file(args.config, run_dir=args.run_dir))
    except PrefsmithError as error:  # one line and exit 2, as `prefsmith run` stops
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
