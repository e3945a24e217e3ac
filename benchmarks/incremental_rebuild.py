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

    .venv/bin/python benchmarks/incremental_rebuild.py [--prompts 1800] [--root DIR] [--out FILE]
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
    facts = {
        stage: Manifest.read(out / f"{table_name}.manifest.json").extra
        for stage, table_name in (("generate", "responses"), ("score", "scores"))
    }
    return {"out": out, "seconds": seconds, "facts": facts}


def differing_rows(got: Path, want: Path) -> dict[str, int]:
    """Rows of `got`'s responses and scores that differ from `want`'s (joined on response_id)."""
    from prefsmith.schemas.io import read_frame
    from prefsmith.schemas.tables import RESPONSES, SCORES

    counts = {}
    for table, schema, column in (
        ("responses", RESPONSES, "response"),
        ("scores", SCORES, "score"),
    ):
        a, b = (read_frame(w / table, schema).select("response_id", column) for w in (got, want))
        joined = a.join(b, on="response_id", suffix="_want", how="full", coalesce=True)
        counts[table] = int((joined[column] != joined[f"{column}_want"]).fill_null(True).sum())
    return counts


def markdown(results: dict, *, n_seed: int, n_total: int, diff: dict[str, int]) -> str:
    total = {name: sum(r["seconds"].values()) for name, r in results.items()}
    ratio = total["rebuild"] / total["full"]
    lines = [
        "# Incremental rebuild: generate + score after adding 10% new prompts",
        "",
        f"Command: `.venv/bin/python benchmarks/incremental_rebuild.py --prompts {n_seed}` "
        f"({time.strftime('%Y-%m-%d', time.gmtime())}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, one run). Tiny local models: vLLM (CPU) samples 4 responses "
        "per prompt (up to 48 tokens), the tiny reward model scores them; each stage is the "
        "CLI in a fresh process (start-up and model load included).",
        "",
        "| build | prompts | generate s | score s | total s | responses reused / computed | scores reused / computed |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        g, s = r["facts"]["generate"], r["facts"]["score"]
        prompts = n_seed if name == "seed" else n_total
        lines.append(
            f"| {name} | {prompts} | {r['seconds']['generate']:.1f} | {r['seconds']['score']:.1f} "
            f"| {total[name]:.1f} | {g['rows_reused']} / {g['rows_computed']} "
            f"| {s['rows_reused']} / {s['rows_computed']} |"
        )
    lines += [
        "",
        f"**Rebuild / full = {ratio:.3f}** (goal: <= 0.2).",
        "",
        f"Rows of the rebuild that differ from the full build: responses {diff['responses']}, "
        f"scores {diff['scores']} (of {n_total * 4}).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=1800, help="prompts of the first build")
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    for key, value in QUICKSTART_ENV.items():
        os.environ.setdefault(key, value)
    root = args.root or Path(tempfile.mkdtemp(prefix="incremental-"))
    from prefsmith.flows.tiny import build_tiny_setup

    models = build_tiny_setup(root / "models")
    n_total = args.prompts + args.prompts // 10
    everything = write_prompts(root / "prompts-all.jsonl", n_total)
    first = root / "prompts-first.jsonl"
    first.write_text("".join(everything.read_text().splitlines(keepends=True)[: args.prompts]))
    with_store = stage_config(root, models, root / "store")
    without = stage_config(root, models, None)
    results = {
        "seed": build("seed", first, config=with_store, root=root),
        "rebuild": build("rebuild", everything, config=with_store, root=root),
        "full": build("full", everything, config=without, root=root),
    }
    diff = differing_rows(results["rebuild"]["out"], results["full"]["out"])
    text = markdown(results, n_seed=args.prompts, n_total=n_total, diff=diff)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
