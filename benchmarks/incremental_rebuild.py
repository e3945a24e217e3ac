"""Incremental rebuild: generate + score wall time of a rebuild after adding 10% new prompts, as a
ratio of a full build of the same prompts (the issue's goal: <= 0.2), measured in one run.

Three builds on the tiny local models (vLLM on the CPU, the tiny reward model), each stage run as
the CLI a user runs (`prefsmith generate`, `prefsmith score`: a fresh process each, so process
start-up and model loading are counted as the user pays them):

1. `seed`: the first N prompts, with the store (fills it);
2. `rebuild`: N + 10% prompts, with the same store: only the new prompts reach a model;
3. `full`: the same N + 10% prompts without a store.

Ratio = rebuild / full (generate + score seconds). The rebuild's rows are compared with the full
build's: a batched engine's float rounding may depend on which prompts share a batch, so the
count of differing rows is reported rather than assumed to be zero.

    .venv/bin/python benchmarks/incremental_rebuild.py [--prompts 1800 9000] [--root DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from prefsmith.flows.quickstart import QUICKSTART_ENV

RESULT = Path(__file__).parent / "results" / "incremental_rebuild.md"
CLI = [sys.executable, "-m", "prefsmith.flows.cli"]


def write_prompts(path: Path, count: int) -> Path:
    """`count` distinct prompts in the tiny policy's vocabulary (the first ones are stable)."""
    from prefsmith.flows.tiny import sample_prompt

    rng = random.Random(0)
    lines = [json.dumps({"prompt": f"{sample_prompt(rng)} {i}"}) for i in range(count)]
    path.write_text("\n".join(lines) + "\n")
    return path


def stage_config(root: Path, models, store: Path | None) -> Path:
    sections = {
        "generate": {
            "model": str(models.policy),
            "backend": "vllm",
            "dtype": "float32",
            "max_model_len": 256,
            "shard_size": 64,
            "sampling": {"n": 4, "temperature": 1.0, "max_new_tokens": 48},
            "store": str(store) if store else None,
        },
        "score": {
            "kind": "reward_model",
            "model": str(models.reward_model),
            "shard_size": 1024,
            "store": str(store) if store else None,
        },
    }
    path = root / f"config-{'store' if store else 'nostore'}.yaml"
    path.write_text(yaml.safe_dump(sections, sort_keys=False))
    return path


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def build(name: str, prompts: Path, *, config: Path, root: Path) -> dict:
    """prompts → generate → score into `root/name`; seconds per stage and reuse counts."""
    from prefsmith.schemas.manifest import Manifest

    out = root / name
    subprocess.run(
        [*CLI, "prompts", str(prompts), "--out", str(out)], check=True, capture_output=True
    )
    table = out / "prompts.parquet"
    seconds = {
        "generate": timed(
            [*CLI, "generate", str(table), "--out", str(out), "--config", str(config)]
        ),
        "score": timed(
            [
                *CLI,
                "score",
                str(out / "responses"),
                "--prompts",
                str(table),
                "--out",
                str(out),
                "--config",
                str(config),
            ]
        ),
    }
    manifests = {
        stage: Manifest.read(out / f"{table_name}.manifest.json")
        for stage, table_name in (("generate", "responses"), ("score", "scores"))
    }
    facts = {stage: m.extra for stage, m in manifests.items()}
    inside = {stage: m.wall_time_s for stage, m in manifests.items()}
    return {"out": out, "seconds": seconds, "facts": facts, "inside": inside}


def differing_rows(got: Path, want: Path) -> dict[str, float]:
    """Rows of `got`'s responses and scores that differ from `want`'s (joined on response_id),
    and the largest score difference."""
    from prefsmith.schemas.io import read_frame
    from prefsmith.schemas.tables import RESPONSES, SCORES

    counts: dict[str, float] = {}
    for table, schema, column in (
        ("responses", RESPONSES, "response"),
        ("scores", SCORES, "score"),
    ):
        a, b = (read_frame(w / table, schema).select("response_id", column) for w in (got, want))
        joined = a.join(b, on="response_id", suffix="_want", how="full", coalesce=True)
        counts[table] = int((joined[column] != joined[f"{column}_want"]).fill_null(True).sum())
        if table == "scores":
            gap = (joined["score"] - joined["score_want"]).abs()
            counts["score_max_abs"] = float(gap.max())
            counts["scores_over_1e-4"] = int((gap > 1e-4).sum())
    return counts


def markdown(results: dict, *, n_seed: int, n_total: int, diff: dict[str, float]) -> str:
    """One section: the three builds, the ratio (CLI wall time and inside the stages), the check."""
    total = {name: sum(r["seconds"].values()) for name, r in results.items()}
    inside = {name: sum(r["inside"].values()) for name, r in results.items()}
    lines = [
        f"## {n_seed} prompts, then {n_total}",
        "",
        "| build | prompts | generate s | score s | total s | inside the stages s "
        "| responses reused / computed | scores reused / computed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        g, s = r["facts"]["generate"], r["facts"]["score"]
        prompts = n_seed if name == "seed" else n_total
        lines.append(
            f"| {name} | {prompts} | {r['seconds']['generate']:.1f} | {r['seconds']['score']:.1f} "
            f"| {total[name]:.1f} | {inside[name]:.1f} | {g['rows_reused']} / {g['rows_computed']} "
            f"| {s['rows_reused']} / {s['rows_computed']} |"
        )
    lines += [
        "",
        f"**Rebuild / full = {total['rebuild'] / total['full']:.3f}** as the user waits "
        f"(CLI wall time); {inside['rebuild'] / inside['full']:.3f} inside the stage functions "
        "(model load included, process start-up not). Goal: <= 0.2.",
        "",
        f"Rebuild rows that differ from the full build's fresh computation: responses "
        f"{diff['responses']} of {n_total * 4}; scores {diff['scores']}, by at most "
        f"{diff['score_max_abs']:.2g} ({diff['scores_over_1e-4']} by more than 1e-4).",
        "",
    ]
    return "\n".join(lines)


HEADER = """# Incremental rebuild: generate + score after adding 10% new prompts

Command: `.venv/bin/python benchmarks/incremental_rebuild.py --prompts {sizes}` ({date}, {machine},
{cpus} CPUs, one run per size). Tiny local models: vLLM (CPU) samples 4 responses per prompt (up
to 48 tokens), the tiny reward model scores them; each stage is the CLI in a fresh process, so
process start-up and model loading count as the user pays them. `seed` fills the store, `rebuild`
adds 10% new prompts and reuses it, `full` computes the same prompts without a store.

"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--prompts", type=int, nargs="+", default=[1800], help="prompts of the first build"
    )
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    for key, value in QUICKSTART_ENV.items():
        os.environ.setdefault(key, value)
    root = args.root or Path(tempfile.mkdtemp(prefix="incremental-"))
    from prefsmith.flows.tiny import build_tiny_setup

    models = build_tiny_setup(root / "models")
    text = HEADER.format(
        sizes=" ".join(map(str, args.prompts)),
        date=time.strftime("%Y-%m-%d", time.gmtime()),
        machine=platform.machine(),
        cpus=os.cpu_count(),
    )
    for size in args.prompts:
        text += one_size(root / f"n{size}", models, size)
        args.out.write_text(text)
    print(text)


def one_size(root: Path, models, n_seed: int) -> str:
    """The three builds for `n_seed` prompts (+10%) under `root`; their markdown section."""
    root.mkdir(parents=True, exist_ok=True)
    n_total = n_seed + n_seed // 10
    everything = write_prompts(root / "prompts-all.jsonl", n_total)
    first = root / "prompts-first.jsonl"
    first.write_text("".join(everything.read_text().splitlines(keepends=True)[:n_seed]))
    with_store = stage_config(root, models, root / "store")
    without = stage_config(root, models, None)
    results = {
        "seed": build("seed", first, config=with_store, root=root),
        "rebuild": build("rebuild", everything, config=with_store, root=root),
        "full": build("full", everything, config=without, root=root),
    }
    diff = differing_rows(results["rebuild"]["out"], results["full"]["out"])
    return markdown(results, n_seed=n_seed, n_total=n_total, diff=diff)


if __name__ == "__main__":
    main()
