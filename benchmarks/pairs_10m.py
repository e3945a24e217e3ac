"""Benchmark: best_vs_worst pairs from 10 million scored responses on two cores.

Target (issue): <= 3 s and <= 1 GB peak memory. Three measurements, each in a fresh Python
process (so the peak RSS is that step's alone, import baseline included and reported):

- `selection`: the stage's core query alone — scan the scores shards, keep one scorer and the
  finite scores, best vs worst per prompt by selection score (scoring.pairs.best_vs_worst: one
  group_by with max_by/min_by on the rank key), then scoring.pairs.pairs_from (n >= 2, margin
  rule), as the stage does; the pairs' ids and raw scores, without texts.
- `queries`: every lazy query of the stage (scoring.pairs.plan_queries) collected together:
  the join to responses (text), duplicate-text merging, selection, join to prompts
  (messages), per-prompt outcomes, quarantine rows and counts. No pair ids, no writing.
- `stage`: scoring.pairs.build_pairs end to end (adds pair ids, Parquet writes, input hashes
  for the manifest).

Usage (from the repository root; data are generated once, untimed, and reused):

    .venv/bin/python benchmarks/pairs_10m.py [--prompts 2500000] [--per-prompt 4] [--data DIR]

Responses are short ("answer 17") so that the numbers are about the query, not about I/O.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEPS = ("selection", "queries", "stage")


def generate(data: Path, *, prompts: int, per_prompt: int, shards: int = 10, seed: int = 0) -> None:
    """Write prompts/responses/scores shard folders (skipped if `data` already holds them)."""
    import numpy as np
    import polars as pl
    import pyarrow as pa

    from schemas.io import shard_name, write_table
    from schemas.tables import PROMPTS, RESPONSES, SCORES

    marker = data / "params.json"
    params = {"prompts": prompts, "per_prompt": per_prompt, "shards": shards, "seed": seed}
    if marker.exists() and json.loads(marker.read_text()) == params:
        return
    rng = np.random.default_rng(seed)
    n = prompts * per_prompt
    sample = np.tile(np.arange(per_prompt, dtype=np.int32), prompts)  # (N,)
    pid = "p" + pl.Series(np.repeat(np.arange(prompts), per_prompt)).cast(pl.String).str.zfill(15)
    score = rng.normal(size=n)  # (N,)
    score[rng.random(n) < 1e-3] = np.nan  # a few non-finite scores to quarantine
    n_tokens = rng.integers(1, 200, size=n).astype(np.int32)  # (N,)
    frame = pl.DataFrame({
        "prompt_id": pid, "response_id": pid + "-" + pl.Series(sample).cast(pl.String),
        "sample_idx": sample, "response": "answer " + pl.Series(rng.integers(0, 50, size=n)).cast(pl.String),
        "n_tokens": n_tokens, "score": score,
    })  # fmt: skip
    empty = pa.array([[]] * n, type=SCORES.field("objectives").type)
    bounds = np.linspace(0, n, shards + 1).astype(int)
    for index in range(shards):
        part = frame[bounds[index] : bounds[index + 1]]
        rows = part.height
        responses = part.select(RESPONSES.names[:5]).to_arrow().append_column(
            "finish_reason", pa.array(["stop"] * rows)).append_column(
            "generator", pa.array(["bench"] * rows)).append_column("gen_config_hash", pa.array(["h"] * rows))  # fmt: skip
        scores = part.select("response_id", "prompt_id", scorer=pl.lit("rm-bench"), score="score").to_arrow()
        scores = scores.append_column("objectives", empty[: rows]).append_column("n_tokens", pa.array(part["n_tokens"]))
        write_table(responses, data / "responses" / shard_name(index), RESPONSES)
        write_table(scores, data / "scores" / shard_name(index), SCORES)
    unique = frame.select("prompt_id").unique(maintain_order=True)
    messages = pl.concat_list(pl.struct(role=pl.lit("user"), content="q " + pl.col("prompt_id")))
    prompt_rows = unique.with_columns(messages=messages, source=pl.lit("bench"), metadata=pl.lit("{}"))
    write_table(prompt_rows.to_arrow(), data / "prompts" / shard_name(0), PROMPTS)
    marker.write_text(json.dumps(params))


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM).

    Not getrusage's ru_maxrss: Linux carries that across fork+exec, so a child started by a
    parent that generated the data would report the parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(step: str, data: Path, out: Path) -> dict:
    """Run one step in this process; return wall and CPU time, peak RSS and the pairs made."""
    import polars as pl

    from schemas.data_configs import PairsConfig
    from schemas.tables import SCORES
    from scoring import pairs as P

    baseline_mb = peak_rss_mb()
    config = PairsConfig()
    paths = {name: data / name for name in ("scores", "responses", "prompts")}
    cpu, start = cpu_seconds(), time.perf_counter()
    if step == "selection":
        scores = P.scan_table(paths["scores"], schema=SCORES, what="scores")
        finite = scores.filter((pl.col("scorer") == "rm-bench") & pl.col("score").is_finite())
        groups = P.best_vs_worst(finite.select("prompt_id", "response_id", "score", "n_tokens"), length_penalty=0.0)
        rows = P.pairs_from({"stats": groups.collect(engine="streaming")}, min_margin=0.0).height
    elif step == "queries":
        _, queries = P.plan_queries(paths["scores"], responses=paths["responses"], prompts=paths["prompts"], config=config)
        frames = dict(zip(queries, pl.collect_all(list(queries.values()), engine="streaming"), strict=True))
        rows = P.pairs_from(frames, min_margin=0.0).height
    else:
        result = P.build_pairs(paths["scores"], responses=paths["responses"], prompts=paths["prompts"], config=config, out_dir=out)
        rows = json.loads(result.manifest.read_text())["rows_written"]["pairs"]
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    return {"step": step, "wall_s": round(seconds, 2), "cpu_s": round(cpu, 2), "peak_rss_mb": round(peak_rss_mb()),
            "import_baseline_mb": round(baseline_mb), "pairs": rows, "loadavg_1m": os.getloadavg()[0]}  # fmt: skip


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    import polars

    return {"nproc": os.cpu_count(), "cpu": model, "polars": polars.__version__, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M"), "loadavg": os.getloadavg()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=2_500_000)
    parser.add_argument("--per-prompt", type=int, default=4)
    parser.add_argument("--data", type=Path, default=Path("/tmp/prefsmith-bench/pairs-10m"))
    parser.add_argument("--step", choices=STEPS, help="internal: measure one step in this process")
    args = parser.parse_args()
    if args.step:
        print(json.dumps(measure(args.step, args.data, args.data / "out")))
        return
    start = time.perf_counter()
    generate(args.data, prompts=args.prompts, per_prompt=args.per_prompt)
    print(json.dumps({"generated_in_s": round(time.perf_counter() - start, 1), "data": str(args.data)}))
    print(json.dumps(machine()))
    env = {**os.environ, "POLARS_MAX_THREADS": "2", "PYTHONPATH": str(REPO)}
    for step in STEPS:
        command = [sys.executable, __file__, "--step", step, "--data", str(args.data)]
        done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        print(done.stdout.strip().splitlines()[-1], flush=True)
    print(json.dumps({"loadavg_after": os.getloadavg()}))


if __name__ == "__main__":
    main()
