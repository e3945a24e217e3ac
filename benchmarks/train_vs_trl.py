"""prefsmith's trainer vs TRL 1.16 `DPOTrainer`: same model, pairs, loss, batch size and machine.

    .venv/bin/python benchmarks/train_vs_trl.py [--size tiny|large] [--reps 5] [--epochs 2]
        [--threads N] [--sides ours ours-packed ours-lora ours-concat trl] [--root DIR]
        [--gradient-checkpointing] [--out benchmarks/results]

Results: `results/train_vs_trl[_<size>][_<threads>threads][_gc].md` and `.json` beside it.
`--gradient-checkpointing` turns it on for every side (TRL's default; prefsmith's is off).

Not part of the test suite (minutes of CPU). Setup (built once under --root, by
`train_vs_trl_setup.py` beside this script):
- model: random-init LlamaForCausalLM, hidden 256, 4 layers, 4 heads (2 KV), MLP 512, vocab 384
  (the byte-level BPE tokenizer of `prefsmith.flows.tiny`), float32 weights and compute on both sides
  (TRL turns bf16 autocast and gradient checkpointing on by default; both are off here, as in
  prefsmith's defaults);
- pairs: 64, prompts of ~64 tokens after the chat template, responses of 64-128 tokens;
- loss: DPO, beta 0.1, reference log-probs precomputed (prefsmith: `prefsmith reference`;
  TRL: `precompute_ref_log_probs=True`), so each step is one policy forward/backward;
- both trainers get the same token ids (TRL's own tokenization would also train the newline the
  template writes after EOS), the same batch size (8 pairs), epochs, AdamW and learning rate.

Each side runs in a fresh subprocess, sides alternating, `--reps` times; the timed part is
`trainer.train()` only (model loading, tokenization and the reference pass excluded on both
sides). tokens/s counts real (non-pad) tokens of prompt+chosen and prompt+rejected per pair per
epoch, identical for both sides. Memory is the process's peak RSS during `train()` (sampled every
2 ms). On a shared machine the best run is the least disturbed one; the median is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from train_vs_trl_setup import SIZES, build

BATCH, BETA, LR = 8, 0.1, 1e-5
SIDES = ["ours", "ours-packed", "ours-lora", "ours-concat", "trl"]
LAYOUTS = {"ours-concat": "concatenated", "ours-packed": "packed"}  # the rest: shared_prompt
LORA = {"r": 16, "alpha": 32.0, "target_modules": "all-linear"}


class PeakRss:
    """Peak resident set size (bytes) of this process while the block runs, sampled every 2 ms."""

    def __enter__(self):
        self.peak, self._stop = _rss(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _config(model_dir: Path, epochs: int, side: str, checkpointing: bool = False):
    from prefsmith.schemas.config_base import parse_config
    from prefsmith.schemas.train_configs import TrainConfig

    return parse_config(
        TrainConfig,
        {
            "policy": str(model_dir),
            "max_length": 512,
            "max_prompt_length": 256,
            "learning_rate": LR,
            "per_device_train_batch_size": BATCH,
            "num_train_epochs": epochs,
            "warmup_ratio": 0.0,
            "logging_steps": 10,
            "save_steps": 0,
            "loss": [{"name": "dpo", "params": {"beta": BETA}}],
            "pair_layout": LAYOUTS.get(side, "shared_prompt"),
            "adapter": LORA if side == "ours-lora" else None,
            "gradient_checkpointing": checkpointing,
        },
    )


def _examples(model_dir: Path, pairs_ref: Path, config) -> list[dict]:
    """prefsmith's rendered pair examples (token ids + reference log-probs); no model loaded."""
    from transformers import AutoTokenizer

    from prefsmith.training.stage import build_examples, read_pairs

    rows, has_ref = read_pairs(pairs_ref, config=config)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    return build_examples(
        rows, tokenizer=tokenizer, config=config, pairs=pairs_ref, has_reference=has_ref
    )[0]


def _our_trainer(config, examples: list[dict], out: Path):
    import datasets

    from prefsmith.training.policy import load_policy
    from prefsmith.training.stage import make_trainer, training_arguments

    args = training_arguments(config, out_dir=out)
    args.disable_tqdm = True
    tokenizer, model = load_policy(config)
    return make_trainer(
        model, tokenizer, datasets.Dataset.from_list(examples), config=config, args=args
    )


def _trl_trainer(
    model_dir: Path, examples: list[dict], out: Path, epochs: int, checkpointing: bool
):
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    class GivenIds(DPOTrainer):  # the same token ids as prefsmith (see the module docstring)
        def _prepare_dataset(self, dataset, *args, **kwargs):
            return dataset

    ids = datasets.Dataset.from_list(
        [{k: e[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")} for e in examples]
    )
    args = DPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=BATCH,
        num_train_epochs=epochs,
        learning_rate=LR,
        beta=BETA,
        precompute_ref_log_probs=True,
        bf16=False,
        max_length=None,
        logging_steps=10,
        save_strategy="no",
        report_to=[],
        warmup_steps=0,
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        dataloader_num_workers=0,
        gradient_checkpointing=checkpointing,
    )  # (TRL defaults to True; prefsmith to False)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    return GivenIds(model=model, args=args, train_dataset=ids, processing_class=tokenizer)


def run_side(side: str, root: Path, epochs: int, checkpointing: bool = False) -> dict:
    """One timed run in this process; returns its measurements."""
    import resource

    model_dir, pairs_ref = root / "model", root / "ref" / "pairs_ref.parquet"
    config = _config(model_dir, epochs, side, checkpointing)
    examples = _examples(model_dir, pairs_ref, config)
    if side == "trl":
        trainer = _trl_trainer(model_dir, examples, root / f"out-{side}", epochs, checkpointing)
    else:
        trainer = _our_trainer(config, examples, root / f"out-{side}")
    tokens = epochs * sum(
        2 * len(e["prompt_ids"]) + len(e["chosen_ids"]) + len(e["rejected_ids"]) for e in examples
    )
    with PeakRss() as peak:
        start_rss = _rss()
        start, start_cpu = time.perf_counter(), time.process_time()
        result = trainer.train()
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    return {
        "side": side,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "tokens": tokens,
        "tokens_per_s": tokens / seconds,
        "steps": trainer.state.global_step,
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "trainable_parameters": sum(
            p.numel() for p in trainer.model.parameters() if p.requires_grad
        ),
        "train_loss": result.training_loss,
        "peak_rss_train_mb": peak.peak / 2**20,
        "rss_growth_train_mb": (peak.peak - start_rss) / 2**20,
        "peak_rss_process_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _subprocess(side: str, root: Path, epochs: int, threads: int, checkpointing: bool) -> dict:
    command = [
        sys.executable,
        __file__,
        "--run",
        side,
        "--root",
        str(root),
        "--epochs",
        str(epochs),
        *(["--gradient-checkpointing"] if checkpointing else []),
    ]
    env = dict(
        os.environ, TQDM_DISABLE="1", OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads)
    )
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{side} run failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine(threads: int) -> dict:
    import torch
    import transformers
    import trl

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo")
            if line.startswith("model name")
        ),
        "?",
    )
    memory = next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": f"{int(memory) / 2**20:.0f} GiB",
        "threads per run (OMP_NUM_THREADS)": threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "load average at start (1/5/15 min)": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
    }


def _summary(runs: list[dict], side: str) -> dict:
    mine = [r for r in runs if r["side"] == side]
    return {
        "median": statistics.median(r["tokens_per_s"] for r in mine),
        "cpu": statistics.median(r["tokens"] / r["cpu_seconds"] for r in mine),
        "best": max(r["tokens_per_s"] for r in mine),
        "rss": statistics.median(r["peak_rss_train_mb"] for r in mine),
        "growth": statistics.median(r["rss_growth_train_mb"] for r in mine),
    }


def _ratio_rows(summary: dict[str, dict]) -> list[str]:
    """Markdown rows: each side's medians and best run, and their ratios to TRL's (to the first
    side's when TRL did not run)."""
    trl = summary.get("trl") or next(iter(summary.values()))
    return [
        f"| {side} | {m['median']:.0f} | {m['best']:.0f} | {m['cpu']:.0f} | "
        f"**{m['median'] / trl['median']:.2f}x** | {m['best'] / trl['best']:.2f}x | "
        f"{m['cpu'] / trl['cpu']:.2f}x | {m['rss']:.0f} | {m['rss'] / trl['rss']:.2f} | "
        f"{m['growth']:.0f} |"
        for side, m in summary.items()
    ]


def _run_rows(runs: list[dict]) -> list[str]:
    """Markdown rows: one per run, in the order they ran."""
    return [
        f"| {r['side']} | {r['seconds']:.2f} | {r['cpu_seconds']:.1f} | {r['tokens_per_s']:.0f} | "
        f"{r['train_loss']:.4f} | {r['peak_rss_train_mb']:.0f} | {r['rss_growth_train_mb']:.0f} |"
        for r in runs
    ]


def _setup_text(runs: list[dict], *, epochs: int, size: str, checkpointing: bool) -> str:
    """One paragraph: the data, model and training settings both sides share."""
    s = SIZES[size]
    return (
        f"Setup ({size}): {s['pairs']} pairs, prompt ~{s['prompt']} tokens, responses "
        f"{s['responses'][0]}-{s['responses'][1]} tokens, batch {BATCH} pairs, {epochs} epochs "
        f"({runs[0]['steps']} steps), DPO beta {BETA} with precomputed reference log-probs, "
        f"float32, AdamW lr {LR}, gradient checkpointing {'on' if checkpointing else 'off'} "
        f"for every side. Llama hidden "
        f"{s['hidden']} / {s['layers']} layers / MLP {s['mlp']} / vocab 384, random init "
        f"({runs[0].get('parameters', 0) / 1e6:.1f}M parameters). {runs[0]['tokens']} real "
        f"tokens per run. `ours-lora`: LoRA r {LORA['r']}, alpha {LORA['alpha']:g}, all linear "
        "layers, the base frozen."
    )


def report(
    runs: list[dict], facts: dict, *, epochs: int, size: str = "tiny", checkpointing: bool = False
) -> str:
    """Markdown: machine facts, medians / best runs with their ratios to TRL, every run."""
    summary = {side: _summary(runs, side) for side in dict.fromkeys(r["side"] for r in runs)}
    return "\n".join(
        [
            "# prefsmith trainer vs TRL DPOTrainer (CPU)",
            "",
            "**No GPU was lent to this issue: these are CPU figures.** Produced by "
            "`benchmarks/train_vs_trl.py` (see its docstring for the exact setup).",
            "",
            "| fact | value |",
            "|---|---|",
            *(f"| {k} | {v} |" for k, v in facts.items()),
            "",
            _setup_text(runs, epochs=epochs, size=size, checkpointing=checkpointing),
            "",
            "Sides: `ours` = prefsmith defaults (`pair_layout: shared_prompt`, length-grouped batches); "
            "`ours-packed` = `pair_layout: packed`; `ours-lora` = LoRA adapter (peft), same layout "
            "as `ours`; `ours-concat` = `pair_layout: concatenated`; `trl` = "
            "`DPOTrainer(precompute_ref_log_probs=True)`, full fine-tuning.",
            "",
            "## tokens/s and peak memory, ratios to TRL",
            "",
            "| side | tokens/s median | tokens/s best | tokens per CPU-s median | speed ratio (median) | "
            "speed ratio (best) | speed ratio (CPU time) | peak RSS in train MB | RSS ratio | "
            "RSS growth in train MB |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *_ratio_rows(summary),
            "",
            "Wall-clock tokens/s is what a user waits for; tokens per CPU-second (process CPU time) "
            "is less disturbed by other work on a shared machine when each run has one thread.",
            "",
            "## Every run (in order; sides alternate, each a fresh process)",
            "",
            "| side | train s | CPU s | tokens/s | train loss | peak RSS MB | RSS growth MB |",
            "|---|---|---|---|---|---|---|",
            *_run_rows(runs),
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument(
        "--sides",
        nargs="+",
        choices=SIDES,
        default=["ours", "trl"],
        help="ours: shared_prompt layout; ours-concat: concatenated layout",
    )
    parser.add_argument("--root", type=Path, default=None, help="work folder (reused if built)")
    parser.add_argument("--reps", type=int, default=5, help="runs per side, alternating")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="OMP threads per run")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="on every side")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    options = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if options.run:
        checkpointing = options.gradient_checkpointing
        print(json.dumps(run_side(options.run, options.root, options.epochs, checkpointing)))
        return
    root = options.root or Path(tempfile.mkdtemp(prefix="prefsmith-bench-"))
    if not (root / "ref" / "pairs_ref.parquet").is_file():
        build(root, options.size)
    facts, runs = machine(options.threads), []
    for _ in range(options.reps):
        for side in options.sides:
            runs.append(
                _subprocess(
                    side, root, options.epochs, options.threads, options.gradient_checkpointing
                )
            )
            print(json.dumps(runs[-1]), flush=True)
    options.out.mkdir(parents=True, exist_ok=True)
    raw = {"facts": facts, "epochs": options.epochs, "runs": runs}
    name = "train_vs_trl" + ("" if options.size == "tiny" else f"_{options.size}")
    name += "" if options.threads == 1 else f"_{options.threads}threads"
    name += "_gc" if options.gradient_checkpointing else ""
    raw |= {"size": options.size, "gradient_checkpointing": options.gradient_checkpointing}
    (options.out / f"{name}.json").write_text(json.dumps(raw, indent=1))
    text = report(
        runs,
        facts,
        epochs=options.epochs,
        size=options.size,
        checkpointing=options.gradient_checkpointing,
    )
    (options.out / f"{name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
