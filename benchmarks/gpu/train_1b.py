"""prefsmith's trainer vs TRL 1.16 `DPOTrainer` on one GPU: a random-init ~1.1B Llama, same pairs.

    python benchmarks/gpu/train_1b.py [--steps 12] [--sides ours ours-packed trl] [--out DIR]
    python benchmarks/gpu/train_1b.py --smoke      # a 2-layer model on the CPU: checks the script

Ready for the device machine (see ../../README of benchmarks and ENVIRONMENT.md: trl, datasets
and deepspeed travel as wheels; the machine's torch and transformers are used). Each side runs
in a fresh process (`--run SIDE`), so one side's allocator state never helps the other.

- model: LlamaForCausalLM in TinyLlama's shape (hidden 2048, 22 layers, 32 heads, 4 KV heads,
  MLP 5632, vocab 32000; 1.10B parameters), random init, seed 0, weights float32, bf16 autocast
  on both sides (each trainer's `bf16=True`), no gradient checkpointing;
- pairs: 64 of random token ids (no tokenizer is needed for a speed test), prompt 256 tokens,
  responses 384-768 tokens (uniform, seeded), 8 pairs per step;
- loss: DPO beta 0.1 with reference log-probs precomputed (TRL `precompute_ref_log_probs=True`;
  ours: one no-grad pass of the same model before `train()`), so each step is one
  forward/backward of the policy;
- timed: `trainer.train()` only, after one warm-up step that is excluded; tokens/s counts real
  tokens (prompt+chosen and prompt+rejected) per step; memory is `torch.cuda.max_memory_allocated`;
  MFU = 6 x parameters x tokens/s / the chip's dense bf16 peak (H100/H200: 989 TFLOP/s).

Prints one JSON line per side and a markdown table; `--out` also writes `train_1b_gpu.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

SHAPES = {
    "1b": {"hidden_size": 2048, "num_hidden_layers": 22, "num_attention_heads": 32,
           "num_key_value_heads": 4, "intermediate_size": 5632, "vocab_size": 32000},
    "smoke": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 512},
}  # fmt: skip
LENGTHS = {"1b": (256, (384, 768), 64), "smoke": (16, (8, 24), 16)}  # prompt, responses, pairs
BATCH, BETA, LR, PEAK_BF16 = 8, 0.1, 1e-6, 989e12
PAD = 0  # the tiny tokenizer's pad id; both sides pad with it


def examples(shape: str, seed: int = 0) -> list[dict]:
    prompt, (lo, hi), n = LENGTHS[shape]
    vocab, rng = SHAPES[shape]["vocab_size"], random.Random(seed)

    def ids(k: int) -> list[int]:
        return [rng.randrange(3, vocab) for _ in range(k)]

    return [
        {"prompt_ids": ids(prompt), "chosen_ids": ids(rng.randint(lo, hi)),
         "rejected_ids": ids(rng.randint(lo, hi))}
        for _ in range(n)
    ]  # fmt: skip


def build_model(shape: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        **SHAPES[shape], max_position_embeddings=2048, pad_token_id=0, bos_token_id=1,
        eos_token_id=2, tie_word_embeddings=False, attn_implementation="sdpa",
    )  # fmt: skip
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return LlamaForCausalLM(config).to(device)


def add_reference(model, rows: list[dict]) -> None:
    """Reference log-probs from the initial model (one no-grad pass), as `prefsmith reference`."""
    import torch

    from prefsmith.training.reference import pair_sequences, sequence_logps

    seqs = pair_sequences((r["prompt_ids"], r["chosen_ids"], r["rejected_ids"]) for r in rows)
    model.eval()
    with torch.autocast(
        model.device.type, dtype=torch.bfloat16, enabled=model.device.type == "cuda"
    ):
        logps = sequence_logps(model, seqs, token_budget=16384, pad_id=0)
    model.train()
    for i, row in enumerate(rows):
        row["ref_chosen_logps"], row["ref_rejected_logps"] = logps[2 * i][0], logps[2 * i + 1][0]
        row["length"] = sum(len(row[k]) for k in ("prompt_ids", "chosen_ids", "rejected_ids"))
        row["weight"] = 1.0


def ours(model, rows, steps: int, out: Path, layout: str):
    import datasets
    from transformers import TrainingArguments

    from prefsmith.training.collate import PairCollator
    from prefsmith.training.trainer import PreferenceTrainer

    add_reference(model, rows)
    args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=BATCH, max_steps=steps,
        learning_rate=LR, bf16=model.device.type == "cuda", logging_steps=steps,
        save_strategy="no", report_to=[], disable_tqdm=True, remove_unused_columns=False,
        train_sampling_strategy="group_by_length", length_column_name="length",
        dataloader_num_workers=0, use_cpu=model.device.type == "cpu",
    )  # fmt: skip
    return PreferenceTrainer(
        model=model, args=args, train_dataset=datasets.Dataset.from_list(rows),
        data_collator=PairCollator(pad_token_id=0, layout=layout),
        loss_terms=[("dpo", 1.0, {"beta": BETA})],
    )  # fmt: skip


def trl(model, rows, steps: int, out: Path):
    import datasets
    from trl import DPOConfig, DPOTrainer

    class GivenIds(DPOTrainer):  # the same token ids as ours, no tokenizer
        def _prepare_dataset(self, dataset, *args, **kwargs):
            return dataset

    ids = datasets.Dataset.from_list(
        [{k: r[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")} for r in rows]
    )
    args = DPOConfig(
        output_dir=str(out), per_device_train_batch_size=BATCH, max_steps=steps,
        learning_rate=LR, beta=BETA, precompute_ref_log_probs=True, max_length=None,
        bf16=model.device.type == "cuda", gradient_checkpointing=False, logging_steps=steps,
        save_strategy="no", report_to=[], disable_tqdm=True, dataloader_num_workers=0,
        use_cpu=model.device.type == "cpu",
    )  # fmt: skip
    return GivenIds(model=model, args=args, train_dataset=ids, processing_class=tokenizer(out))


def tokenizer(out: Path):
    """A real tokenizer for TRL's type check and pad id (the ids are given, never tokenized)."""
    from transformers import AutoTokenizer

    from prefsmith.flows.tiny import build_tokenizer

    folder = out / "tokenizer"
    build_tokenizer(folder)
    loaded = AutoTokenizer.from_pretrained(str(folder))
    assert loaded.pad_token_id == PAD, loaded.pad_token_id
    return loaded


def run_side(side: str, shape: str, steps: int, out: Path) -> dict:
    import torch

    model, rows = build_model(shape), examples(shape)
    parameters = sum(p.numel() for p in model.parameters())
    if side == "trl":
        trainer = trl(model, rows, steps + 1, out / side)
    else:
        trainer = ours(
            model,
            rows,
            steps + 1,
            out / side,
            "packed" if side == "ours-packed" else "shared_prompt",
        )
    per_step = (
        BATCH
        * sum(
            2 * len(r["prompt_ids"]) + len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in rows
        )
        / len(rows)
    )
    timer = {"start": None}

    from transformers import TrainerCallback

    class AfterWarmup(TrainerCallback):  # the clock starts after step 1 (allocator, kernels warm)
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 1:
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                timer["start"] = time.perf_counter()

    trainer.add_callback(AfterWarmup())
    trainer.train()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - timer["start"]
    tokens_per_s = steps * per_step / seconds
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    return {
        "side": side, "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "parameters": parameters, "steps": steps, "seconds": seconds, "tokens_per_s": tokens_per_s,
        "peak_memory_gib": peak, "mfu": 6 * parameters * tokens_per_s / PEAK_BF16,
    }  # fmt: skip


def table(results: list[dict]) -> str:
    trl = next((r for r in results if r["side"] == "trl"), None)
    lines = [
        "| side | device | tokens/s | x TRL | peak GiB | x TRL | MFU |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        speed = f"{r['tokens_per_s'] / trl['tokens_per_s']:.2f}" if trl else "-"
        memory = f"{r['peak_memory_gib'] / trl['peak_memory_gib']:.2f}" if trl else "-"
        lines.append(
            f"| {r['side']} | {r['device']} | {r['tokens_per_s']:.0f} | {speed} | {r['peak_memory_gib']:.1f} | {memory} | {r['mfu']:.1%} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--sides", nargs="+", default=["ours", "ours-packed", "trl"])
    parser.add_argument("--steps", type=int, default=12, help="timed steps (after one warm-up)")
    parser.add_argument("--smoke", action="store_true", help="a 2-layer model: checks the script")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp")))
    options = parser.parse_args()
    shape = "smoke" if options.smoke else "1b"
    if options.run:
        print(json.dumps(run_side(options.run, shape, options.steps, options.out)))
        return
    results = []
    for side in options.sides:
        command = [
            sys.executable,
            __file__,
            "--run",
            side,
            "--steps",
            str(options.steps),
            "--out",
            str(options.out),
        ]
        done = subprocess.run(
            command + (["--smoke"] if options.smoke else []), capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"{side} failed:\n{done.stderr[-3000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    print(table(results))
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "train_1b_gpu.md").write_text(table(results) + "\n")


if __name__ == "__main__":
    main()
