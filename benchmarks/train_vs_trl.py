"""prefsmith's trainer vs TRL 1.16 `DPOTrainer`: same model, pairs, loss, batch size and machine.

    .venv/bin/python benchmarks/train_vs_trl.py [--reps 3] [--epochs 2] [--out benchmarks/results]

Setup (built under --root, default a temporary folder):
- model: random-init LlamaForCausalLM, hidden 256, 4 layers, 4 heads (2 KV), MLP 512, vocab 384
  (the tiny byte-level BPE tokenizer of `flows.tiny`), float32 weights, float32 compute on both
  sides (TRL turns bf16 autocast on by default; it is turned off here);
- pairs: 64, prompts of ~64 tokens after the chat template, responses of 64-128 tokens;
- loss: DPO, beta 0.1, reference log-probs precomputed (prefsmith: `prefsmith reference`;
  TRL: `precompute_ref_log_probs=True`), so each step is one policy forward/backward;
- both trainers get the same token ids (TRL's own tokenization would also train the newline the
  template writes after EOS), the same batch size (8 pairs), epochs, AdamW, learning rate.

Each side runs in a fresh subprocess, alternating, `--reps` times; the timed part is
`trainer.train()` only (model loading, tokenization and reference pass excluded on both sides).
tokens/s counts real (non-pad) tokens of prompt+chosen and prompt+rejected per pair per epoch.
Peak memory is the process's peak RSS during `train()` (sampled every 2 ms) and overall.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

N_PAIRS, PROMPT_TOKENS, RESPONSE_TOKENS = 64, 64, (64, 128)
BATCH, BETA, LR = 8, 0.1, 1e-5
SIDES = ["ours", "ours-concat", "trl"]


def _text_of_tokens(tokenizer, rng: random.Random, n_tokens: int) -> str:
    """Random words whose tokenization is about `n_tokens` long."""
    from flows.tiny import WORDS

    words: list[str] = []
    while len(tokenizer(" ".join(words), add_special_tokens=False).input_ids) < n_tokens:
        words.append(rng.choice(WORDS))
    return " ".join(words)


def build(root: Path) -> tuple[Path, Path]:
    """Tokenizer + model folder and a pairs table with reference log-probs; returns their paths."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from flows.tiny import build_tokenizer
    from schemas.config_base import parse_config
    from schemas.io import write_table
    from schemas.tables import PAIRS
    from schemas.train_configs import ReferenceConfig
    from scoring.reference import reference_pass

    model_dir = root / "model"
    build_tokenizer(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=256, intermediate_size=512, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(str(model_dir))
    rng = random.Random(0)
    rows = []
    for i in range(N_PAIRS):
        prompt = _text_of_tokens(tokenizer, rng, PROMPT_TOKENS - 8)  # the template adds ~8 tokens
        chosen, rejected = (_text_of_tokens(tokenizer, rng, rng.randint(*RESPONSE_TOKENS) - 1) for _ in "ab")
        rows.append({"pair_id": f"p{i}", "prompt_id": f"q{i}", "messages": [{"role": "user", "content": prompt}],
                     "chosen": chosen, "rejected": rejected, "chosen_response_id": f"q{i}-0",
                     "rejected_response_id": f"q{i}-1", "score_chosen": 1.0, "score_rejected": 0.0,
                     "margin": 1.0, "strategy": "bench", "scorer": "none"})  # fmt: skip
    pairs = write_table(rows, root / "pairs.parquet", PAIRS)
    ref = parse_config(ReferenceConfig, {"model": str(model_dir), "max_length": 512, "max_prompt_length": 256,
                                         "dtype": "float32"})  # fmt: skip
    return model_dir, reference_pass(pairs, config=ref, out_dir=root / "ref").output


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


def _our_trainer(model_dir: Path, pairs_ref: Path, out: Path, epochs: int, *, layout: str = "shared_prompt"):
    import datasets

    from schemas.config_base import parse_config
    from schemas.train_configs import TrainConfig
    from training.stage import build_examples, load_policy, make_trainer, read_pairs, training_arguments

    config = parse_config(TrainConfig, {
        "policy": str(model_dir), "max_length": 512, "max_prompt_length": 256, "learning_rate": LR,
        "per_device_train_batch_size": BATCH, "num_train_epochs": epochs, "warmup_ratio": 0.0,
        "logging_steps": 10, "save_steps": 0, "loss": [{"name": "dpo", "params": {"beta": BETA}}],
        "pair_layout": layout,
    })  # fmt: skip
    rows, has_ref = read_pairs(pairs_ref, config=config)
    args = training_arguments(config, out_dir=out)
    args.disable_tqdm = True
    tokenizer, model = load_policy(config)
    examples, _ = build_examples(rows, tokenizer=tokenizer, config=config, pairs=pairs_ref, has_reference=has_ref)
    return make_trainer(model, tokenizer, datasets.Dataset.from_list(examples), config=config, args=args), examples


def _trl_trainer(model_dir: Path, examples: list[dict], out: Path, epochs: int):
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    class GivenIds(DPOTrainer):  # the same token ids as prefsmith (see the module docstring)
        def _prepare_dataset(self, dataset, *args, **kwargs):
            return dataset

    ids = datasets.Dataset.from_list([{k: e[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")} for e in examples])
    args = DPOConfig(output_dir=str(out), per_device_train_batch_size=BATCH, num_train_epochs=epochs,
                     learning_rate=LR, beta=BETA, precompute_ref_log_probs=True, bf16=False, max_length=None,
                     logging_steps=10, save_strategy="no", report_to=[], warmup_steps=0, use_cpu=True,
                     disable_tqdm=True, seed=0, dataloader_num_workers=0,
                     gradient_checkpointing=False)  # TRL's default is True; prefsmith's False  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    return GivenIds(model=model, args=args, train_dataset=ids, processing_class=tokenizer)


def run_side(side: str, root: Path, epochs: int) -> dict:
    """One timed run in this process; returns its measurements."""
    model_dir, pairs_ref = root / "model", root / "ref" / "pairs_ref.parquet"
    layout = "concatenated" if side == "ours-concat" else "shared_prompt"
    ours, examples = _our_trainer(model_dir, pairs_ref, root / f"out-{side}", epochs, layout=layout)
    trainer = _trl_trainer(model_dir, examples, root / f"out-{side}", epochs) if side == "trl" else ours
    tokens = epochs * sum(2 * len(e["prompt_ids"]) + len(e["chosen_ids"]) + len(e["rejected_ids"]) for e in examples)
    with PeakRss() as peak:
        start_rss = _rss()
        start, start_cpu = time.perf_counter(), time.process_time()
        result = trainer.train()
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    import resource

    return {"side": side, "seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds,
            "cpu_seconds": cpu_seconds, "tokens_per_cpu_s": tokens / cpu_seconds,
            "steps": trainer.state.global_step, "train_loss": result.training_loss,
            "peak_rss_train_mb": peak.peak / 2**20, "rss_growth_train_mb": (peak.peak - start_rss) / 2**20,
            "peak_rss_process_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip


def _subprocess(side: str, root: Path, epochs: int) -> dict:
    command = [sys.executable, __file__, "--run", side, "--root", str(root), "--epochs", str(epochs)]
    done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, TQDM_DISABLE="1"))
    if done.returncode != 0:
        raise RuntimeError(f"{side} run failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> dict:
    import torch
    import transformers
    import trl

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": cpu, "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
            "load_avg_at_start": os.getloadavg()}  # fmt: skip


def report(runs: list[dict], facts: dict, *, epochs: int) -> str:
    """The markdown results table: medians per side and the ratios."""
    med = {s: {k: statistics.median(r[k] for r in runs if r["side"] == s)
               for k in ("tokens_per_s", "seconds", "peak_rss_train_mb", "rss_growth_train_mb", "peak_rss_process_mb")}
           for s in ("ours", "trl")}  # fmt: skip
    rows = "\n".join(
        f"| {r['side']} | {r['seconds']:.2f} | {r['tokens_per_s']:.0f} | {r['train_loss']:.4f} | "
        f"{r['peak_rss_train_mb']:.0f} | {r['rss_growth_train_mb']:.0f} |" for r in runs
    )
    speed = med["ours"]["tokens_per_s"] / med["trl"]["tokens_per_s"]
    memory = med["ours"]["peak_rss_train_mb"] / med["trl"]["peak_rss_train_mb"]
    growth = med["ours"]["rss_growth_train_mb"] / max(med["trl"]["rss_growth_train_mb"], 1e-9)
    return "\n".join([
        "# prefsmith trainer vs TRL DPOTrainer (CPU)", "",
        "No GPU was lent to this issue: these are CPU figures. Produced by `benchmarks/train_vs_trl.py`.", "",
        "| fact | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in facts.items()), "",
        f"Setup: {N_PAIRS} pairs, prompt ~{PROMPT_TOKENS} tokens, responses {RESPONSE_TOKENS[0]}-"
        f"{RESPONSE_TOKENS[1]} tokens, batch {BATCH} pairs, {epochs} epochs, DPO beta {BETA} with "
        "precomputed reference log-probs, float32, AdamW lr 1e-5. Llama hidden 256 / 4 layers / vocab 384.", "",
        "## Medians and ratios (ours / TRL)", "",
        "| metric | prefsmith | TRL | ratio |", "|---|---|---|---|",
        f"| tokens/s | {med['ours']['tokens_per_s']:.0f} | {med['trl']['tokens_per_s']:.0f} | **{speed:.2f}x** |",
        f"| peak RSS during train (MB) | {med['ours']['peak_rss_train_mb']:.0f} | {med['trl']['peak_rss_train_mb']:.0f} | {memory:.2f} |",
        f"| RSS growth during train (MB) | {med['ours']['rss_growth_train_mb']:.0f} | {med['trl']['rss_growth_train_mb']:.0f} | {growth:.2f} |",
        f"| peak RSS of the process (MB) | {med['ours']['peak_rss_process_mb']:.0f} | {med['trl']['peak_rss_process_mb']:.0f} | |",
        "", "## Every run (alternating, fresh processes)", "",
        "| side | train s | tokens/s | train loss | peak RSS train MB | RSS growth MB |", "|---|---|---|---|---|---|",
        rows, "",
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=["ours", "trl"],
                        help="ours: shared_prompt layout; ours-concat: concatenated layout")
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    options = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if options.run:
        print(json.dumps(run_side(options.run, options.root, options.epochs)))
        return
    root = options.root or Path(tempfile.mkdtemp(prefix="prefsmith-bench-"))
    if not (root / "ref" / "pairs_ref.parquet").is_file():
        build(root)
    facts, runs = machine(), []
    for _ in range(options.reps):
        for side in options.sides:
            runs.append(_subprocess(side, root, options.epochs))
            print(json.dumps(runs[-1]), flush=True)
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "train_vs_trl.md").write_text(report(runs, facts, epochs=options.epochs))
    print((options.out / "train_vs_trl.md").read_text())


if __name__ == "__main__":
    main()
