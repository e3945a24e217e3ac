"""KL(policy ‖ reference) estimated on the policy's own samples (Monte Carlo).

With y ~ π(·|x) sampled by the tuned policy, log π(y|x) − log π_ref(y|x) is an unbiased sample
of KL(π ‖ π_ref) at x; its mean over held-out samples estimates the expected KL. Both models
score the same token ids (the policy's chat template via `prefsmith.training.render`, as in training), one
model loaded at a time. Per sample, with d_t = log π_ref(y_t|·) − log π(y_t|·) over completion
tokens t (EOS included):

| column   | formula                   | note                                              |
|----------|---------------------------|---------------------------------------------------|
| kl_seq   | Σ_t −d_t                  | the standard estimator ("k1"), nats per sequence  |
| k3_seq   | Σ_t (e^{d_t} − 1 − d_t)   | Schulman's low-variance k3, each term ≥ 0         |

Summary (`summarize_kl`): `kl_seq_mean` (± standard error), `k3_seq_mean`, and `kl_per_token`
= Σ kl_seq / Σ tokens (token-weighted, so long samples count for their length).
Output `kl.parquet` (KL_SAMPLES); quarantine reasons: unknown_prompt, template_error,
prompt_too_long, empty_completion.
"""

from __future__ import annotations

import gc
import logging
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from prefsmith.generation.checkpoints import inference_folder
from prefsmith.generation.turn_end import end_of_turn_ids
from prefsmith.schemas.errors import StageError
from prefsmith.schemas.eval_configs import PolicyReferenceConfig
from prefsmith.schemas.io import read_frame, write_table
from prefsmith.schemas.manifest import (
    Inputs,
    Manifest,
    StageResult,
    count_reasons,
    input_path,
    input_ref,
    manifest_path,
)
from prefsmith.schemas.progress import track
from prefsmith.schemas.quarantine import Rejected, write_quarantine
from prefsmith.schemas.tables import PROMPTS, RESPONSES
from prefsmith.schemas.train_configs import ReferenceConfig
from prefsmith.scoring.batching import token_budget_batches
from prefsmith.training.policy import pad_token_id
from prefsmith.training.render import render_pairs, template_hash

logger = logging.getLogger(__name__)

OUTPUT_NAME = "kl.parquet"
KL_SAMPLES = pa.schema(
    [
        ("response_id", pa.string()),
        ("prompt_id", pa.string()),
        ("tokens", pa.int32()),
        ("logp_policy", pa.float64()),
        ("logp_reference", pa.float64()),
        ("kl_seq", pa.float64()),
        ("k3_seq", pa.float64()),
    ]
)


def sample_kl(policy_logps: np.ndarray, reference_logps: np.ndarray) -> tuple[float, float]:
    """(k1, k3) of one sample from its per-token log-probs `(T,)` under policy and reference."""
    d = np.asarray(reference_logps, np.float64) - np.asarray(policy_logps, np.float64)  # (T,)
    return float(-d.sum()), float(np.sum(np.expm1(d) - d))


def summarize_kl(samples: pl.DataFrame) -> dict[str, float | int | None]:
    """Mean KL per sequence (k1 and k3), its standard error, and the token-weighted per-token KL."""
    n = samples.height
    if n == 0:
        return {
            "n_samples": 0,
            "kl_seq_mean": None,
            "kl_seq_se": None,
            "k3_seq_mean": None,
            "kl_per_token": None,
            "tokens_mean": None,
        }
    kl = samples["kl_seq"].to_numpy()
    return {
        "n_samples": n,
        "kl_seq_mean": float(kl.mean()),
        "kl_seq_se": float(kl.std(ddof=1) / np.sqrt(n)) if n > 1 else None,
        "k3_seq_mean": float(samples["k3_seq"].mean()),
        "kl_per_token": float(kl.sum() / max(int(samples["tokens"].sum()), 1)),
        "tokens_mean": float(samples["tokens"].mean()),
    }


def per_token_logps(
    model, sequences: list[tuple[list[int], int]], *, token_budget: int, pad_id: int
) -> list[np.ndarray]:
    """Per-token completion log-probs `(T_i,)` of each (ids, prompt length), batched by budget."""
    import torch

    from prefsmith.training.collate import right_pad
    from prefsmith.training.logprobs import logps_at

    device = next(model.parameters()).device
    out: list[np.ndarray] = [np.zeros(0)] * len(sequences)
    for batch in track(
        token_budget_batches([len(s[0]) for s in sequences], budget=token_budget),
        desc="KL log-probs",
        unit="batch",
    ):
        ids = right_pad([sequences[i][0] for i in batch], pad_id, multiple=None).to(
            device
        )  # (N, T)
        lengths = torch.tensor([len(sequences[i][0]) for i in batch], device=device)  # (N,)
        prompts = torch.tensor([sequences[i][1] for i in batch], device=device)  # (N,)
        positions = torch.arange(ids.shape[1], device=device)[None, :]  # (1, T)
        select = ((positions >= prompts[:, None]) & (positions < lengths[:, None]))[
            :, 1:
        ]  # (N, T-1)
        rows, cols = select.nonzero(as_tuple=True)  # (M,), (M,) row-major
        with torch.inference_mode():
            logps = logps_at(
                model,
                ids,
                rows=rows,
                positions=cols,
                targets=ids[rows, cols + 1],
                chunk_tokens=token_budget,
            )  # (M,)
        for i, part in zip(
            batch, logps.double().cpu().split(select.sum(dim=1).tolist()), strict=True
        ):
            out[i] = part.numpy()
    return out


def _model_logps(config: ReferenceConfig, sequences, *, pad_id: int) -> list[np.ndarray]:
    """Load one model, score every sequence, free the model before the next one loads."""
    import torch

    from prefsmith.training.reference import load_reference_model

    model = load_reference_model(config)
    try:
        return per_token_logps(model, sequences, token_budget=config.token_budget, pad_id=pad_id)
    finally:
        del model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _render(responses: Path, prompts: Path, *, tokenizer, end_ids, config: ReferenceConfig):
    """(rows kept, their (ids, prompt length), rejections), via the trainer's own rendering."""
    frame = read_frame(responses, RESPONSES).join(
        read_frame(prompts, PROMPTS).select("prompt_id", "messages"), on="prompt_id", how="left"
    )
    rows, rejected = [], []
    for row in frame.iter_rows(named=True):
        if row["messages"] is None:
            rejected.append(Rejected(row["response_id"], "unknown_prompt", row["prompt_id"]))
        else:
            rows.append(
                {
                    "pair_id": row["response_id"],
                    "prompt_id": row["prompt_id"],
                    "messages": row["messages"],
                    "chosen": row["response"],
                    "rejected": row["response"],
                }
            )
    rendered, bad = render_pairs(
        rows,
        tokenizer=tokenizer,
        end_ids=end_ids,
        max_length=config.max_length,
        max_prompt_length=config.max_prompt_length,
    )
    kept = [(row, pair) for row, pair in zip(rows, rendered, strict=True) if pair is not None]
    sequences = [(pair.prompt_ids + pair.chosen_ids, len(pair.prompt_ids)) for _, pair in kept]
    return [row for row, _ in kept], sequences, rejected + bad, frame.height


def _check_same_tokens(policy: str, reference: ReferenceConfig):
    """The policy's tokenizer, after checking the reference reads token ids the same way."""
    from transformers import AutoTokenizer

    mine = AutoTokenizer.from_pretrained(policy, trust_remote_code=reference.trust_remote_code)
    theirs = AutoTokenizer.from_pretrained(
        reference.model, trust_remote_code=reference.trust_remote_code
    )
    if template_hash(mine) != template_hash(theirs) or mine.get_vocab() != theirs.get_vocab():
        raise StageError(
            f"KL estimate: policy {policy} and reference {reference.model} have different "
            "tokenizers or chat templates; KL over token sequences needs the same ones"
        )
    return mine


def _sample_rows(
    rows: list[dict], policy_logps: list[np.ndarray], reference_logps: list[np.ndarray]
) -> list[dict]:
    """One KL_SAMPLES row per rendered sample, from its per-token log-probs under both models."""
    out = []
    for row, lp, lr in zip(rows, policy_logps, reference_logps, strict=True):
        k1, k3 = sample_kl(lp, lr)
        out.append(
            {
                "response_id": row["pair_id"],
                "prompt_id": row["prompt_id"],
                "tokens": int(lp.size),
                "logp_policy": float(lp.sum()),
                "logp_reference": float(lr.sum()),
                "kl_seq": k1,
                "k3_seq": k3,
            }
        )
    return out


def kl_estimate(
    inputs: Inputs, *, config: PolicyReferenceConfig, out_dir: str | Path
) -> StageResult:
    """KL(policy ‖ reference) on the policy's samples `inputs["responses"]` (their prompts in
    `inputs["prompts"]`); write `kl.parquet` and its manifest.

    `config.reference` gives the reference model and the rendering limits (max_length, dtype,
    token budget); the policy is loaded with the same settings.
    """
    start = time.perf_counter()
    responses, prompts = input_path(inputs, "responses"), input_path(inputs, "prompts")
    policy, reference, out_dir = config.policy, config.reference, Path(out_dir)
    policy = inference_folder(policy, trust_remote_code=reference.trust_remote_code)
    tokenizer = _check_same_tokens(policy, reference)
    end_ids = end_of_turn_ids(policy, tokenizer)  # where the policy's generation stopped
    rows, sequences, rejected, n_in = _render(
        responses, prompts, tokenizer=tokenizer, end_ids=end_ids, config=reference
    )
    pad_id = pad_token_id(tokenizer)
    policy_config = reference.model_copy(update={"model": policy, "revision": None})
    mine = _model_logps(policy_config, sequences, pad_id=pad_id)
    theirs = _model_logps(reference, sequences, pad_id=pad_id)
    out = _sample_rows(rows, mine, theirs)
    output = write_table(out, out_dir / OUTPUT_NAME, KL_SAMPLES)
    quarantine = write_quarantine(rejected, out_dir / "kl.quarantine.parquet", stage="kl")
    summary = summarize_kl(read_frame(output, KL_SAMPLES))
    manifest = Manifest(
        stage="kl",
        unit="response",
        config=config.model_dump(mode="json"),
        inputs=[input_ref(responses), input_ref(prompts)],
        rows_in=n_in,
        rows_out=len(out),
        outputs={"kl": str(output), "quarantine": str(quarantine)},
        dropped=count_reasons([r.reason for r in rejected]),
        rows_written={"kl": len(out), "quarantine": len(rejected)},
        extra={"summary": summary},
        wall_time_s=time.perf_counter() - start,
    )
    logger.info("kl: %d samples, KL per sequence %s", len(out), summary["kl_seq_mean"])
    return StageResult(output, quarantine, manifest.write(manifest_path(output)))
