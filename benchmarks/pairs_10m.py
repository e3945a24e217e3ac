"""Benchmark: best_vs_worst pairs from 10 million scored responses on two cores.

Target (issue): <= 3 s and <= 1 GB peak memory. Each step runs in a fresh Python process (so
the peak RSS, VmHWM, is that step's alone, import baseline included and reported), with
POLARS_MAX_THREADS=2; wall and CPU (user + sys, all threads) seconds are both reported, and
the busiest thread's CPU seconds: wall on 2 idle cores >= max(busiest thread, CPU / 2):

- `selection`: the stage's core selection alone — stream the scores shards in batches of
  whole prompts (prefsmith.curation.pairs_stream.score_batches + complete_runs, read ahead in a thread),
  keep one scorer and the finite scores, best vs worst per prompt by selection score
  (prefsmith.curation.pairs_select.select_batch: numpy segment reductions over the prompt runs), margin
  rule applied; the pairs' response ids, raw scores and margins, without texts.
- `stage`: prefsmith.curation.pairs.build_pairs end to end (join to responses, duplicate-text merging,
  selection, pair ids, messages, the Parquet writes, the quarantine, input hashes for the
  manifest).
- `fallback` (only with `--steps ... fallback`): build_pairs forced onto its sorted, in-memory
  path (prefsmith.curation.pairs_stream.sorted_runs), the one taken by input not grouped by prompt.

Usage (from the repository root; data are generated once, untimed, and reused):

    .venv/bin/python benchmarks/pairs_10m.py [--prompts 2500000] [--per-prompt 4] [--data DIR]
        [--steps selection stage fallback]

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
STEPS = ("selection", "stage", "fallback")


def _scored_responses(*, prompts: int, per_prompt: int, seed: int):
    """One row per response, `per_prompt` per prompt in prompt order: ids, text, tokens, score."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    n = prompts * per_prompt
    sample = np.tile(np.arange(per_prompt, dtype=np.int32), prompts)  # (N,)
    pid = "p" + pl.Series(np.repeat(np.arange(prompts), per_prompt)).cast(pl.String).str.zfill(15)
    score = rng.normal(size=n)  # (N,)
    score[rng.random(n) < 1e-3] = np.nan  # a few non-finite scores to quarantine
    n_tokens = rng.integers(1, 200, size=n).astype(np.int32)  # (N,)
    return pl.DataFrame(
        {
            "prompt_id": pid,
            "response_id": pid + "-" + pl.Series(sample).cast(pl.String),
            "sample_idx": sample,
            "response": "answer " + pl.Series(rng.integers(0, 50, size=n)).cast(pl.String),
            "n_tokens": n_tokens,
            "score": score,
        }
    )


def _write_shard(part, data: Path, *, index: int) -> None:
    """Rows `part` of the scored responses as shard `index` of the responses and scores tables."""
    import polars as pl
    import pyarrow as pa

    from prefsmith.schemas.io import shard_name, write_table
    from prefsmith.schemas.tables import RESPONSES, SCORES

    rows = part.height
    responses = (
        part.select(RESPONSES.names[:5])
        .to_arrow()
        .append_column("finish_reason", pa.array(["stop"] * rows))
        .append_column("generator", pa.array(["bench"] * rows))
        .append_column("gen_config_hash", pa.array(["h"] * rows))
    )
    scores = part.select(
        "response_id", "prompt_id", scorer=pl.lit("rm-bench"), score="score"
    ).to_arrow()
    scores = scores.append_column(
        "objectives", pa.array([[]] * rows, type=SCORES.field("objectives").type)
    ).append_column("n_tokens", pa.array(part["n_tokens"]))
    write_table(responses, data / "responses" / shard_name(index), RESPONSES)
    write_table(scores, data / "scores" / shard_name(index), SCORES)


def _write_prompts(frame, data: Path) -> None:
    """The prompts table (one shard): each prompt id once, a one-message conversation."""
    import polars as pl

    from prefsmith.schemas.io import shard_name, write_table
    from prefsmith.schemas.tables import PROMPTS

    unique = frame.select("prompt_id").unique(maintain_order=True)
    messages = pl.concat_list(pl.struct(role=pl.lit("user"), content="q " + pl.col("prompt_id")))
    prompt_rows = unique.with_columns(
        messages=messages, source=pl.lit("bench"), metadata=pl.lit("{}")
    )
    write_table(prompt_rows.to_arrow(), data / "prompts" / shard_name(0), PROMPTS)


def generate(data: Path, *, prompts: int, per_prompt: int, shards: int = 10, seed: int = 0) -> None:
    """Write prompts/responses/scores shard folders (skipped if `data` already holds them)."""
    import numpy as np

    marker = data / "params.json"
    params = {"prompts": prompts, "per_prompt": per_prompt, "shards": shards, "seed": seed}
    if marker.exists() and json.loads(marker.read_text()) == params:
        return
    frame = _scored_responses(prompts=prompts, per_prompt=per_prompt, seed=seed)
    bounds = np.linspace(0, frame.height, shards + 1).astype(int)
    for index in range(shards):
        _write_shard(frame[bounds[index] : bounds[index + 1]], data, index=index)
    _write_prompts(frame, data)
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
    """User + sys CPU seconds of the whole process (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class BusiestThread:
    """Samples every thread's CPU seconds (/proc/self/task) while a step runs.

    The busiest thread's CPU time is a lower bound on the wall time with any number of idle
    cores (a thread never runs on two), just as CPU / 2 is one on two cores.
    """

    def __init__(self, every_s: float = 0.05) -> None:
        import threading

        self.seen: dict[str, float] = {}
        self._stop, self._every = threading.Event(), every_s
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        for task in Path("/proc/self/task").iterdir():
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # the thread ended between listing and reading
                continue
            self.seen[task.name] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self._sample()

    def __enter__(self) -> BusiestThread:
        self._sample()
        self.start = dict(self.seen)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def seconds(self) -> float:
        mine = str(self._thread.native_id)
        used = [cpu - self.start.get(tid, 0.0) for tid, cpu in self.seen.items() if tid != mine]
        return max(used, default=0.0)


def selection(scores: Path, *, scorer: str) -> int:
    """Best vs worst per prompt from the scores alone (no texts): the number of pairs."""
    import polars as pl

    from prefsmith.curation.pairs_select import select_batch
    from prefsmith.curation.pairs_stream import complete_runs, prefetch, score_batches
    from prefsmith.schemas.data_configs import PairsConfig
    from prefsmith.schemas.io import shard_files

    config, pairs = PairsConfig(), 0
    status = pl.when(~pl.col("score").is_finite().fill_null(False)).then(pl.lit("non_finite_score"))
    for batch in prefetch(complete_runs(score_batches(shard_files(scores), scorer=scorer))):
        batch = batch.with_columns(status=status.otherwise(pl.lit(None, dtype=pl.String)))
        pairs += select_batch(batch, config=config).candidates.height
    return pairs


def build(paths: dict[str, Path], out: Path, *, force_fallback: bool) -> int:
    """prefsmith.curation.pairs.build_pairs on the benchmark tables: the number of pairs written."""
    from prefsmith.curation import pairs as P
    from prefsmith.schemas.data_configs import PairsConfig

    if force_fallback:  # as if the scores were not grouped by prompt

        def not_streamable(*args, **kwargs):
            raise P.NotStreamable("forced by the benchmark")
            yield  # a generator, like the real stream_runs

        P.stream_runs = not_streamable
    result = P.build_pairs(
        {
            "scores": paths["scores"],
            "responses": paths["responses"],
            "prompts": paths["prompts"],
        },
        config=PairsConfig(),
        out_dir=out,
    )
    return json.loads(result.manifest.read_text())["rows_written"]["pairs"]


def measure(step: str, data: Path, out: Path) -> dict:
    """Run one step in this process; return wall and CPU time, peak RSS and the pairs made.

    The imports happen first, outside the timing (as the stage's caller has them loaded),
    but inside the peak memory (reported separately as the baseline).
    """
    import prefsmith.curation.pairs  # noqa: F401  (polars, pyarrow, numpy, pydantic and the stage)

    baseline_mb = peak_rss_mb()
    paths = {name: data / name for name in ("scores", "responses", "prompts")}
    with BusiestThread() as busiest:
        cpu, start = cpu_seconds(), time.perf_counter()
        if step == "selection":
            rows = selection(paths["scores"], scorer="rm-bench")
        else:
            rows = build(paths, out, force_fallback=step == "fallback")
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    return {
        "step": step,
        "wall_s": round(seconds, 2),
        "cpu_s": round(cpu, 2),
        "busiest_thread_cpu_s": round(busiest.seconds(), 2),
        "peak_rss_mb": round(peak_rss_mb()),
        "import_baseline_mb": round(baseline_mb),
        "pairs": rows,
        "loadavg_1m": os.getloadavg()[0],
    }


def machine() -> dict:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    import polars

    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "polars": polars.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "loadavg": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=2_500_000)
    parser.add_argument("--per-prompt", type=int, default=4)
    parser.add_argument("--data", type=Path, default=Path("/tmp/prefsmith-bench/pairs-10m"))
    parser.add_argument(
        "--steps",
        nargs="+",
        choices=STEPS,
        default=list(STEPS[:2]),
        help="steps to measure, in order",
    )
    parser.add_argument("--step", choices=STEPS, help="internal: measure one step in this process")
    args = parser.parse_args()
    if args.step:
        print(json.dumps(measure(args.step, args.data, args.data / "out")))
        return
    start = time.perf_counter()
    generate(args.data, prompts=args.prompts, per_prompt=args.per_prompt)
    print(
        json.dumps(
            {"generated_in_s": round(time.perf_counter() - start, 1), "data": str(args.data)}
        )
    )
    print(json.dumps(machine()))
    env = {**os.environ, "POLARS_MAX_THREADS": "2", "PYTHONPATH": str(REPO)}
    for step in args.steps:
        command = [sys.executable, __file__, "--step", step, "--data", str(args.data)]
        done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        print(done.stdout.strip().splitlines()[-1], flush=True)
    print(json.dumps({"loadavg_after": os.getloadavg()}))


if __name__ == "__main__":
    main()
