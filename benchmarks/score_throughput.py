"""Score-stage throughput: our token-budget batched scorer vs the naive one-at-a-time loop.

The naive loop is what public reward-model scripts and model cards do (e.g. the ArmoRM and
Skywork-Reward cards): for each response, `apply_chat_template(..., return_tensors="pt")`, one
forward, read `logits[0][0]`. Ours (`prefsmith.scoring.reward_model.ModelScorer`) renders the same tokens,
sorts rows by length, packs them into right-padded batches of at most `token_budget` padded
tokens and runs one forward per batch under `torch.inference_mode`.

The model is a random-init LlamaForSequenceClassification built locally (hidden 256, 4 layers,
saved and loaded with from_pretrained); the responses are ~512 generated texts of 20–400 tokens.
Both paths see identical token ids, and the script checks that their scores agree.

    .venv/bin/python benchmarks/score_throughput.py            # writes benchmarks/results/score_throughput.md
    .venv/bin/python benchmarks/score_throughput.py --responses 128 --repeats 1 --out /tmp/x.md
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from prefsmith.flows.tiny import WORDS, build_tokenizer, sample_prompt
from prefsmith.schemas.data_configs import ScoreConfig
from prefsmith.scoring.batching import ScoreRequest, token_budget_batches
from prefsmith.scoring.reward_model import encode_requests, load_reward_model

RESULTS = Path(__file__).resolve().parent / "results" / "score_throughput.md"
MAX_LENGTH = 1024


@dataclass(frozen=True)
class Timing:
    name: str
    seconds: list[float]  # one per repeat
    tokens: int  # prompt + response tokens the model saw, per repeat
    responses: int

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def build_model(root: Path, *, hidden: int = 256, layers: int = 4, seed: int = 0) -> Path:
    """A random-init LlamaForSequenceClassification + the tiny chat tokenizer, saved at root/rm."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    tokenizer = build_tokenizer(root / "tokenizer")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 4,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=MAX_LENGTH,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForSequenceClassification(config)
    model.save_pretrained(str(root / "rm"))
    tokenizer.save_pretrained(str(root / "rm"))
    return root / "rm"


def make_requests(tokenizer, *, n: int, seed: int = 0) -> list[ScoreRequest]:
    """n prompt/response pairs whose responses are about 20–400 tokens (uniform)."""
    rng = random.Random(seed)
    sample = " ".join(rng.choice(WORDS) for _ in range(2000))
    per_word = len(tokenizer(sample, add_special_tokens=False).input_ids) / 2000
    requests = []
    for index in range(n):
        target = rng.randint(20, 400)
        text = " ".join(rng.choice(WORDS) for _ in range(max(1, round(target / per_word))))
        messages = [{"role": "user", "content": sample_prompt(rng)}]
        requests.append(ScoreRequest(f"r{index}", "p", messages, text))
    return requests


def naive_score(requests: list[ScoreRequest], *, model, tokenizer) -> tuple[list[float], int]:
    """The public-script loop: tokenize one conversation, one forward, read logits[0][0]."""
    scores, tokens = [], 0
    with torch.no_grad():
        for request in requests:
            conversation = [*request.messages, {"role": "assistant", "content": request.response}]
            input_ids = tokenizer.apply_chat_template(
                conversation, tokenize=True, return_tensors="pt", return_dict=False
            )  # (1, T)
            scores.append(model(input_ids.to(model.device)).logits[0][0].item())
            tokens += input_ids.shape[-1]
    return scores, tokens


def load_naive(path: Path):
    """The naive loop with its model loaded once (loading is timed in neither path)."""
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
    if torch.cuda.is_available():  # the same device as our scorer uses
        model = model.to("cuda")
    return partial(naive_score, model=model, tokenizer=tokenizer)


def load_ours(path: Path, *, budget: int):
    """prefsmith's scorer: token-budget batches, right padding, inference_mode."""
    scorer = load_reward_model(
        ScoreConfig(model=str(path), token_budget=budget, max_length=MAX_LENGTH)
    )

    def run(requests: list[ScoreRequest]) -> tuple[list[float], int]:
        outcomes = scorer(requests)
        return [o.score for o in outcomes], sum(o.n_tokens for o in outcomes)

    return run


def time_it(name: str, fn, requests, *, repeats: int) -> tuple[Timing, list[float]]:
    """Run `fn(requests)` `repeats` times after a short warm-up; wall time of each run."""
    fn(requests[:8])  # warm-up: first-call allocations, lazy imports
    seconds, scores, tokens = [], [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        scores, tokens = fn(requests)
        seconds.append(time.perf_counter() - start)
    return Timing(name, seconds, tokens, len(requests)), scores


def padding_efficiency(
    path: Path, requests: list[ScoreRequest], *, budget: int
) -> tuple[float, int]:
    """(real tokens / padded tokens, number of batches) of our batching on these requests."""
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    encoded, _ = encode_requests(requests, tokenizer=tokenizer, max_length=MAX_LENGTH)
    lengths = [len(encoded[i]) for i in sorted(encoded)]
    batches = token_budget_batches(lengths, budget=budget)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return sum(lengths) / padded, len(batches)


def machine_facts() -> dict[str, str]:
    cpu = "unknown"
    if Path("/proc/cpuinfo").exists():
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {
        "date (UTC)": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": f"{platform.machine()}, nproc {os.cpu_count()}, CPU {cpu}, no GPU used",
        "load average at start (other jobs share this machine)": " ".join(
            f"{x:.2f}" for x in os.getloadavg()
        ),
        "versions": f"python {platform.python_version()}, torch {torch.__version__}, "
        f"transformers {__import__('transformers').__version__}",
        "model": "random-init LlamaForSequenceClassification, hidden 256, 4 layers, 4 heads, "
        "vocab 384, float32",
    }


def row(timing: Timing, *, baseline: Timing | None) -> str:
    rps, tps = timing.responses / timing.best, timing.tokens / timing.best
    ratio = "1.0×" if baseline is None else f"{baseline.best / timing.best:.1f}×"
    runs = ", ".join(f"{s:.2f}" for s in timing.seconds)
    return f"| {timing.name} | {runs} | {rps:,.1f} | {tps:,.0f} | {ratio} |"


def section(threads: int, timings: list[Timing], notes: list[str]) -> list[str]:
    naive = timings[0]
    return [
        f"## torch threads = {threads}",
        "",
        "| scorer | wall s per run | responses/s | tokens/s | speed-up |",
        "|---|---|---|---|---|",
        row(naive, baseline=None),
        *[row(t, baseline=naive) for t in timings[1:]],
        "",
        *notes,
        "",
    ]


def compare(path: Path, requests: list[ScoreRequest], *, budgets: list[int], repeats: int):
    """Naive loop, then our scorer at each budget; returns (timings, notes on padding and diffs)."""
    naive, reference = time_it(
        "naive loop (1 row/forward)", load_naive(path), requests, repeats=repeats
    )
    timings, notes = [naive], []
    for budget in budgets:
        ours = load_ours(path, budget=budget)
        timing, scores = time_it(
            f"prefsmith, token_budget={budget}", ours, requests, repeats=repeats
        )
        efficiency, n_batches = padding_efficiency(path, requests, budget=budget)
        diff = max(abs(a - b) for a, b in zip(scores, reference, strict=True))
        notes.append(
            f"- token_budget={budget}: {n_batches} batches, real/padded tokens "
            f"{efficiency:.1%}, max |score − naive score| = {diff:.1e}"
        )
        timings.append(timing)
    return timings, notes


def workload(path: Path, requests: list[ScoreRequest]) -> str:
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    encoded, _ = encode_requests(requests, tokenizer=tokenizer, max_length=MAX_LENGTH)
    lengths = sorted(len(ids) for ids in encoded.values())
    return (
        f"{len(requests)} responses, {sum(lengths):,} tokens (prompt + response); rendered "
        f"length min/median/max {lengths[0]}/{lengths[len(lengths) // 2]}/{lengths[-1]}"
    )


NOTES_MARKER = "<!-- notes: kept when the script rewrites this file -->"


def write_report(out: Path, header: list[str], body: list[str]) -> str:
    """Write the results, keeping any hand-written notes below NOTES_MARKER."""
    kept = NOTES_MARKER + "\n"
    if out.exists() and NOTES_MARKER in out.read_text():
        kept = out.read_text()[out.read_text().index(NOTES_MARKER) :]
    text = "\n".join([*header, "", *body]) + "\n" + kept
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=512)
    parser.add_argument("--budgets", type=int, nargs="+", default=[2048, 8192, 16384])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, torch.get_num_threads()])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    facts = machine_facts()
    body: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = build_model(Path(tmp))
        requests = make_requests(AutoTokenizer.from_pretrained(str(path)), n=args.responses)
        facts["workload"] = workload(path, requests)
        for threads in dict.fromkeys(args.threads):
            torch.set_num_threads(threads)
            timings, notes = compare(path, requests, budgets=args.budgets, repeats=args.repeats)
            body += section(threads, timings, notes)
    argv = " ".join(sys.argv[1:])
    facts["command"] = f"`.venv/bin/python benchmarks/score_throughput.py {argv}`".replace(
        " `", "`"
    )
    header = [
        "# Score throughput: token-budget batches vs the one-at-a-time loop",
        "",
        "Written by `benchmarks/score_throughput.py`. Speed-up = naive best time / the row's best",
        "time; responses/s and tokens/s use the best of the repeats. Model loading is not timed.",
        "",
        *[f"- {key}: {value}" for key, value in facts.items()],
    ]
    print(write_report(args.out, header, body))


if __name__ == "__main__":
    main()
