"""Peak memory per rank of the train stage on the CPU: model size x ZeRO stage x processes.

    .venv/bin/python benchmarks/train_memory.py [--models tiny medium] [--zero none zero2 zero3]
        [--procs 1 2] [--root DIR] [--out benchmarks/results/train_memory.md]

The measured half of the sizing table in `training/deepspeed/README.md`. Not part of the test
suite (about 5 minutes on 2 cores). Each cell is a fresh child process that calls
`prefsmith.training.launch.launch_train`, the production path: torchrun + `python -m prefsmith.training.stage` on
every rank (no DeepSpeed and one process: `train` in the child itself). Its peak is the kernel's
high-water mark, `getrusage(RUSAGE_CHILDREN | RUSAGE_SELF).ru_maxrss`: the largest resident set
of any one process, i.e. the peak of the biggest rank (what "memory per GPU" means). Linux
carries a process's high-water mark over fork and exec (a child starts at its parent's resident
size), so this script's own process never imports torch: building the models and reading the
versions happen in a child too. The baseline is a child that only imports the training stack
(torch, transformers, DeepSpeed, datasets, `prefsmith.training.trainer`), so `peak - baseline` is what the
model, its training states and the activations add; it is compared with the arithmetic for
float32 training (`arithmetic_mb`).

Models: `tiny` is the tests' policy shape (hidden 64, 2 layers, ~0.1M parameters; its states are
lost in the noise of the imports), `medium` a random-init Llama with hidden 768, 12 layers, MLP
2048, 12 heads, vocab 384 (~86M parameters, 16 bytes/param = 1.4 GB of states). Data: 16 pairs,
max_length 48 (prompt 24), SimPO (reference-free, so no reference pass is needed; the reference
log-probs would only be two floats per pair), global batch 2 pairs (2 per device on 1 process, 1
on 2), 2 optimizer steps, float32 weights and AdamW (no bf16 on the CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

MODELS = {
    "tiny": {"hidden": 64, "layers": 2, "mlp": 128, "heads": 2},
    "medium": {"hidden": 768, "layers": 12, "mlp": 2048, "heads": 12},
}
ZERO = ["none", "zero2", "zero3"]
MAX_LENGTH, MAX_PROMPT, GLOBAL_BATCH, STEPS = 48, 24, 2, 2
MB = 2**20
REPO = Path(__file__).resolve().parents[1]
# DeepSpeed compiles its shared-memory comm op on first use (about a minute); share the tests' cache.
ENV = {
    "OMP_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TORCH_EXTENSIONS_DIR": str(REPO / ".prefsmith" / "test-cache" / "torch_extensions"),
}


def build(root: Path, name: str) -> Path:
    """A random-init Llama of `MODELS[name]` with the tiny tokenizer, saved under root/name."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from prefsmith.flows.tiny import build_tokenizer

    folder = root / name
    if (folder / "config.json").is_file():
        return folder
    build_tokenizer(folder)
    tokenizer, shape = AutoTokenizer.from_pretrained(str(folder)), MODELS[name]
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape["hidden"],
        intermediate_size=shape["mlp"],
        num_hidden_layers=shape["layers"],
        num_attention_heads=shape["heads"],
        num_key_value_heads=shape["heads"],
        max_position_embeddings=128,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(str(folder))
    return folder


def pairs_table(root: Path) -> Path:
    """16 pairs of short chat answers (the tests' generator), no reference columns."""
    from prefsmith.flows.tiny import sample_answer, sample_prompt
    from prefsmith.schemas.io import write_table
    from prefsmith.schemas.tables import PAIRS

    path = root / "pairs.parquet"
    if path.is_file():
        return path
    rng, rows = random.Random(0), []
    for i in range(16):
        rows.append(
            {
                "pair_id": f"p{i}",
                "prompt_id": f"q{i}",
                "messages": [{"role": "user", "content": sample_prompt(rng)}],
                "chosen": sample_answer(rng),
                "rejected": sample_answer(rng),
                "chosen_response_id": f"q{i}-0",
                "rejected_response_id": f"q{i}-1",
                "score_chosen": 1.0,
                "score_rejected": 0.0,
                "margin": 1.0,
                "strategy": "bench",
                "scorer": "none",
            }
        )
    return write_table(rows, path, PAIRS)


def parameters(folder: Path) -> int:
    """Parameter count from the safetensors header (nothing loaded)."""
    from math import prod

    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as handle:
        return sum(prod(handle.get_slice(key).get_shape()) for key in handle.keys())


def _peak_mb() -> float:
    """Largest resident set of this process or any waited-for descendant (ru_maxrss, KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def cell(root: Path, model: str, zero: str, procs: int) -> dict:
    """One measurement (run in its own child process: ru_maxrss only ever grows)."""
    from prefsmith.schemas.config_base import parse_config
    from prefsmith.schemas.train_configs import TrainConfig
    from prefsmith.training.launch import launch_train

    config = {
        "policy": str(root / model),
        "loss": [{"name": "simpo"}],
        "max_length": MAX_LENGTH,
        "max_prompt_length": MAX_PROMPT,
        "max_steps": STEPS,
        "learning_rate": 1e-5,
        "per_device_train_batch_size": GLOBAL_BATCH // procs,
        "group_by_length": False,
        "save_steps": 0,
        "logging_steps": 1,
        "deepspeed": None if zero == "none" else zero,
        "launch": {"nproc_per_node": procs},
    }
    start = time.perf_counter()
    out = root / "runs" / f"{model}-{zero}-{procs}"
    launch_train(
        {"pairs": root / "pairs.parquet"}, config=parse_config(TrainConfig, config), out_dir=out
    )
    measured = {"peak_mb": _peak_mb(), "wall_s": time.perf_counter() - start}
    shutil.rmtree(out)  # a checkpoint per cell: 0.3 GB for `medium`
    return measured


def prepare(root: Path) -> dict:
    """Models, pairs, parameter counts and machine facts (in a child: keeps the parent lean)."""
    pairs_table(root)
    sizes = {model: parameters(build(root, model)) for model in MODELS}
    return {"sizes": sizes, "facts": machine()}


def baseline() -> dict:
    """The training stack imported, nothing loaded."""
    import datasets  # noqa: F401
    import deepspeed  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401

    import prefsmith.training.stage
    import prefsmith.training.trainer  # noqa: F401

    return {"peak_mb": _peak_mb(), "wall_s": 0.0}


def arithmetic_mb(n_params: int, *, zero: str, procs: int) -> tuple[float, float]:
    """(low, high) bytes of float32 training states per rank, MB. Weights 4, gradients 4, AdamW
    m and v 8 bytes per parameter; DeepSpeed ZeRO-1/2 also keeps a float32 copy of its partition
    (4, even when the weights are float32 already); DDP keeps gradient buckets (4). ZeRO-3's high
    end holds every gathered parameter at once (stage3_max_live_parameters 1e9)."""
    p, n = n_params / MB, procs
    if zero == "none":
        low = 16 * p + (4 * p if n > 1 else 0.0)
        return low, low
    if zero == "zero2":
        return 4 * p + 16 * p / n, 4 * p + 16 * p / n
    return 20 * p / n, 20 * p / n + 4 * p * (n - 1) / n


def activations_mb(shape: dict, *, per_device: int) -> float:
    """Upper bound: tokens per rank (one [prompt|chosen|rejected] row per pair) x 68 bytes x
    hidden x layers (Korthikanti et al. 2022, 34 bytes per hidden unit per token in 16-bit
    with fused attention; x2 in float32)."""
    tokens = per_device * (MAX_PROMPT + 2 * (MAX_LENGTH - MAX_PROMPT))
    return tokens * 68 * shape["hidden"] * shape["layers"] / MB


def _child(argv: list[str]) -> dict:
    command = [sys.executable, __file__, *argv]
    done = subprocess.run(
        command, capture_output=True, text=True, env={**ENV, **os.environ, "OMP_NUM_THREADS": "1"}
    )
    if done.returncode != 0:
        raise RuntimeError(f"{argv} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> dict:
    import deepspeed
    import torch
    import transformers

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
        "cpu": f"{cpu} (no GPU)",
        "cores": os.cpu_count(),
        "memory": f"{int(memory) / 2**20:.0f} GiB",
        "threads per rank (OMP_NUM_THREADS)": 1,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "deepspeed": deepspeed.__version__,
        "load average at start (1/5/15 min)": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
    }


def report(rows: list[dict], facts: dict, *, base: float, sizes: dict[str, int]) -> str:
    lines = [
        "# Train-stage memory per rank on the CPU (measured)",
        "",
        "**No GPU: a 2-core CPU machine shared with other work.** Produced by "
        "`benchmarks/train_memory.py` (its docstring has the setup). Peak = the largest "
        "resident set of any one process of the run (ru_maxrss), so per rank.",
        "",
        "| fact | value |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in facts.items()),
        f"| baseline (training stack imported, nothing loaded) | {base:.0f} MB |",
        "",
        "| model | parameters | ZeRO | processes | peak per rank MB | peak - baseline MB | "
        "bytes per parameter | arithmetic: float32 states MB | + activations (bound) MB | "
        "measured / arithmetic | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        low, high = arithmetic_mb(sizes[row["model"]], zero=row["zero"], procs=row["procs"])
        act = activations_mb(MODELS[row["model"]], per_device=GLOBAL_BATCH // row["procs"])
        states = f"{low:.0f}" if low == high else f"{low:.0f}-{high:.0f}"
        added, n_params = row["peak_mb"] - base, sizes[row["model"]]
        lines.append(
            f"| {row['model']} | {n_params / 1e6:.2f}M | {row['zero']} | {row['procs']} | "
            f"{row['peak_mb']:.0f} | {added:.0f} | {added * MB / n_params:.1f} | {states} | "
            f"{act:.0f} | {added / (high + act):.2f} | {row['wall_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--zero", nargs="+", default=ZERO, choices=ZERO)
    parser.add_argument("--procs", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--root", type=Path, default=Path(".prefsmith/bench-train-memory"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/train_memory.md"))
    parser.add_argument(
        "--cell", nargs=3, metavar=("MODEL", "ZERO", "PROCS"), help=argparse.SUPPRESS
    )
    parser.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    root = options.root.resolve()
    if options.baseline or options.cell or options.prepare:
        model, zero, procs = options.cell or (None, None, None)
        done = prepare(root) if options.prepare else baseline() if options.baseline else None
        print(json.dumps(done or cell(root, model, zero, int(procs))))
        return
    root.mkdir(parents=True, exist_ok=True)
    prepared = _child(["--root", str(root), "--prepare"])
    facts, sizes = prepared["facts"], prepared["sizes"]
    base = _child(["--root", str(root), "--baseline"])["peak_mb"]
    rows = []
    for model in options.models:
        for zero in options.zero:
            for procs in options.procs:
                result = _child(["--root", str(root), "--cell", model, zero, str(procs)])
                rows.append({"model": model, "zero": zero, "procs": procs, **result})
                print(rows[-1], flush=True)
    options.out.write_text(report(rows, facts, base=base, sizes=sizes))
    print(options.out.read_text())


if __name__ == "__main__":
    main()
