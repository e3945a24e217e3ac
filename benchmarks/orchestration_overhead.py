"""Orchestration overhead of the quickstart: the share of wall time spent outside stage functions.

Runs the quickstart pipeline flow (tiny local models, bundled prompts, vLLM on the CPU) and
compares its wall time with the sum of the stage manifests' `wall_time_s` (each stage times its
own function body). Everything else is orchestration: Prefect (temporary server start-up, flow
and task runs, cache checks, artifacts), the process start-up of isolated stages (a fresh Python
that imports torch/vLLM before the stage function starts its clock), and the run-folder work.
The temporary server's start-up is measured apart (a no-op flow first) and reported both ways.

    .venv/bin/python benchmarks/orchestration_overhead.py                 # full quickstart
    .venv/bin/python benchmarks/orchestration_overhead.py --build-only    # dataset build only
    options: --root DIR (default: a temp folder), --out FILE (default: results/orchestration_overhead.md),
             --no-isolate (model stages in the flow's process: no per-stage process start-up)
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

from prefsmith.flows.quickstart import QUICKSTART_ENV

RESULT = Path(__file__).parent / "results" / "orchestration_overhead.md"


def stage_seconds(run_dir: Path) -> dict[str, float]:
    """Stage name (manifest path relative to the run folder) -> its own wall time."""
    from prefsmith.schemas.manifest import Manifest

    return {
        str(p.relative_to(run_dir)): Manifest.read(p).wall_time_s
        for p in sorted(run_dir.rglob("*.manifest.json"))
    }


def inside_stages(run_dir: Path) -> float:
    """Seconds inside stage functions: the union of [written - wall_time_s, written] over all
    manifests (written = the manifest file's mtime), so a stage that calls another stage (the
    held-out accuracy runs two reference passes) is not counted twice."""
    from prefsmith.schemas.manifest import Manifest

    spans = sorted(
        (p.stat().st_mtime - Manifest.read(p).wall_time_s, p.stat().st_mtime)
        for p in run_dir.rglob("*.manifest.json")
    )
    total, end = 0.0, float("-inf")
    for start, stop in spans:
        total += max(0.0, stop - max(start, end))
        end = max(end, stop)
    return total


def task_seconds(since: float) -> dict[str, float]:
    """Prefect task runs started after `since` (epoch s): name -> run time seen by Prefect."""
    from prefect.client.orchestration import get_client

    seconds: dict[str, float] = {}
    with get_client(sync_client=True) as client:
        for run in client.read_task_runs(limit=200):
            if run.start_time and run.start_time.timestamp() >= since and run.end_time:
                seconds[run.name] = (run.end_time - run.start_time).total_seconds()
    return seconds


def measure(root: Path, *, build_only: bool, isolate: bool = True) -> dict:
    from prefect import flow

    from prefsmith.flows.pipeline import pipeline
    from prefsmith.flows.quickstart import quickstart_config
    from prefsmith.flows.tiny import build_tiny_setup
    from prefsmith.schemas.config_base import parse_config
    from prefsmith.schemas.pipeline_config import PipelineConfig

    models = build_tiny_setup(root / "models")
    data = quickstart_config(root, models.policy)
    if build_only:
        data.update(train=None, evaluate=None)
    data["isolate_stages"] = isolate
    config = parse_config(PipelineConfig, data)
    start = time.perf_counter()
    flow(name="warm-up")(lambda: None)()  # starts Prefect's temporary server
    server_s = time.perf_counter() - start
    epoch, start = time.time(), time.perf_counter()
    outputs = pipeline(config)
    flow_s = time.perf_counter() - start
    run_dir = Path(outputs["run_dir"])
    return {
        "server_s": server_s,
        "flow_s": flow_s,
        "stages": stage_seconds(run_dir),
        "inside_s": inside_stages(run_dir),
        "tasks": task_seconds(epoch - 1),
        "build_only": build_only,
        "isolated": config.isolate_stages,
    }


def report(m: dict) -> str:
    inside, flow_s = m["inside_s"], m["flow_s"]
    total = m["server_s"] + flow_s
    kind = "dataset build only (no train/eval)" if m["build_only"] else "full quickstart"
    lines = [
        "# Orchestration overhead of the quickstart",
        "",
        f"Run: {kind}, isolate_stages={m['isolated']}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        "`benchmarks/orchestration_overhead.py`.",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"no GPU; load average {os.getloadavg()[0]:.1f} at the end (other work on the machine inflates wall times).",
        "",
        "| measure | seconds | share |",
        "|---|---|---|",
        f"| Prefect temporary server start-up | {m['server_s']:.1f} | |",
        f"| pipeline flow wall time (server already up) | {flow_s:.1f} | 100% |",
        f"| inside stage functions (union of manifest spans) | {inside:.1f} | {inside / flow_s:.1%} |",
        f"| **outside stage functions (flow only)** | {flow_s - inside:.1f} | **{1 - inside / flow_s:.1%}** |",
        f"| outside stage functions, server start-up included | {total - inside:.1f} | "
        f"{1 - inside / total:.1%} of {total:.1f} |",
        "",
        "| stage manifest | stage s |",
        "|---|---|",
    ]
    lines += [f"| {path} | {seconds:.2f} |" for path, seconds in m["stages"].items()]
    lines += ["", "| Prefect task run | task s |", "|---|---|"]
    lines += [f"| {name} | {seconds:.2f} |" for name, seconds in m["tasks"].items()]
    usage = [
        resource.getrusage(who).ru_utime for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    ]
    lines += ["", f"CPU user seconds (this process + children): {sum(usage):.1f}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULT)
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument("--no-isolate", action="store_true", help="run model stages in-process")
    args = parser.parse_args(argv)
    root = args.root or Path(tempfile.mkdtemp(prefix="prefsmith-overhead-"))
    (root / "prefect-home").mkdir(parents=True, exist_ok=True)
    for key, value in {
        **QUICKSTART_ENV,
        "PREFECT_HOME": str(root / "prefect-home"),
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    }.items():
        os.environ.setdefault(key, value)
    text = report(measure(root, build_only=args.build_only, isolate=not args.no_isolate))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
