"""The comparison the evaluation-report tests share: 60 prompts, tuned better and shorter than
base, with KL samples, held-out margins and an lm-eval hook result (eval_report.* under out/)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prefsmith.evaluation.compare import compare_policies
from prefsmith.evaluation.kl import KL_SAMPLES
from prefsmith.evaluation.lm_eval_hook import lm_eval_stage
from prefsmith.evaluation.preference_accuracy import MARGINS
from prefsmith.schemas.eval_configs import CompareConfig, LmEvalConfig
from prefsmith.schemas.io import write_table
from prefsmith.schemas.tables import RESPONSES, SCORES


def write_side(
    root: Path, *, rng, n_prompts: int, shift: float, mean_len: float
) -> tuple[Path, Path]:
    """Scores (2 samples per prompt, reward ≈ shift + noise) and responses tables of one policy."""
    scores, responses = [], []
    for p in range(n_prompts):
        for i in range(2):
            rid, n = f"prompt{p:03d}-{i}", int(max(1, rng.normal(mean_len, 4)))
            score = (
                float(round(shift + rng.normal(0, 1), 1)) if p % 7 else 0.0
            )  # every 7th prompt ties
            scores.append(
                {
                    "response_id": rid,
                    "prompt_id": f"prompt{p:03d}",
                    "scorer": "rule",
                    "score": score,
                    "objectives": [],
                    "n_tokens": n + 10,
                }
            )
            responses.append(
                {
                    "prompt_id": f"prompt{p:03d}",
                    "response_id": rid,
                    "sample_idx": i,
                    "response": "w " * n,
                    "n_tokens": n,
                    "finish_reason": "stop",
                    "generator": "g",
                    "gen_config_hash": "h",
                }
            )
    return write_table(scores, root / "scores.parquet", SCORES), write_table(
        responses, root / "responses.parquet", RESPONSES
    )


def build_report(root: Path):
    """(the `compare_policies` result, `root`) of the shared comparison, written under `root`."""
    rng = np.random.default_rng(0)
    tuned = write_side(root / "tuned", rng=rng, n_prompts=60, shift=0.8, mean_len=12)
    base = write_side(root / "base", rng=rng, n_prompts=58, shift=0.0, mean_len=20)
    kl = write_table(
        [
            {
                "response_id": f"r{i}",
                "prompt_id": f"p{i}",
                "tokens": 10,
                "logp_policy": -5.0,
                "logp_reference": -5.0 - k,
                "kl_seq": k,
                "k3_seq": k / 2,
            }
            for i, k in enumerate(rng.gamma(2.0, 1.0, 50))
        ],
        root / "kl.parquet",
        KL_SAMPLES,
    )
    margins = write_table(
        [
            {
                "pair_id": f"x{i}",
                "prompt_id": f"p{i}",
                "policy_logp_chosen": m,
                "policy_logp_rejected": 0.0,
                "ref_logp_chosen": 0.0,
                "ref_logp_rejected": 0.0,
                "margin": m,
            }
            for i, m in enumerate(rng.normal(0.5, 1.0, 40))
        ],
        root / "margins.parquet",
        MARGINS,
    )
    hook = lm_eval_stage(
        {}, config=LmEvalConfig(checkpoint="ckpt", tasks=["hellaswag"]), out_dir=root / "lm"
    )
    inputs = {
        "tuned_scores": tuned[0],
        "tuned_responses": tuned[1],
        "base_scores": base[0],
        "base_responses": base[1],
        "kl": kl,
        "heldout": margins,
        "lm_eval": hook.output,
    }
    result = compare_policies(inputs, config=CompareConfig(n_boot=500), out_dir=root / "out")
    return result, root
