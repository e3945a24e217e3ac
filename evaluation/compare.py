"""Compare a tuned policy with its base on the same held-out prompts, both scored by one scorer.

Inputs are the scores and responses tables of each policy's generations. Scores are averaged per
prompt (when N > 1 samples) and paired on `prompt_id`; a prompt missing on either side is
dropped and counted. Output: `eval_report.json` (stable keys) and `eval_report.md`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import polars as pl

from evaluation.winrate import length_controlled_win_rate, outcomes, win_rate
from schemas.io import read_frame
from schemas.manifest import Manifest, StageResult, input_ref, manifest_path
from schemas.tables import RESPONSES, SCORES


def per_prompt(scores: Path, responses: Path) -> pl.DataFrame:
    """prompt_id, mean score, mean response tokens, samples — one row per prompt."""
    joined = read_frame(scores, SCORES).join(
        read_frame(responses, RESPONSES).select("response_id", pl.col("n_tokens").alias("gen_tokens")),
        on="response_id", how="left",
    )  # fmt: skip
    return joined.group_by("prompt_id").agg(
        pl.col("score").mean().alias("score"),
        pl.col("gen_tokens").mean().alias("tokens"),
        pl.len().alias("samples"),
    )


def _side(frame: pl.DataFrame) -> dict[str, float | int]:
    return {"mean_reward": float(frame["score"].mean()), "mean_tokens": float(frame["tokens"].mean()),
            "n_prompts": frame.height}  # fmt: skip


def compare_policies(tuned_scores: Path, *, tuned_responses: Path, base_scores: Path,
                     base_responses: Path, out_dir: Path, n_boot: int = 2000,
                     seed: int = 0) -> StageResult:  # fmt: skip
    """Win rate (ties half, 95% bootstrap), LC win rate, mean reward and length of each policy."""
    start = time.perf_counter()
    tuned = per_prompt(tuned_scores, tuned_responses)
    base = per_prompt(base_scores, base_responses)
    paired = tuned.join(base, on="prompt_id", suffix="_base").sort("prompt_id")
    all_ids = set(tuned["prompt_id"]) | set(base["prompt_id"])
    dropped = {"missing_in_tuned": len(all_ids - set(tuned["prompt_id"])),
               "missing_in_base": len(all_ids - set(base["prompt_id"]))}  # fmt: skip
    result = win_rate(paired["score"].to_numpy(), paired["score_base"].to_numpy(), n_boot=n_boot, seed=seed)
    won = outcomes(paired["score"].to_numpy(), paired["score_base"].to_numpy())
    length_diff = (paired["tokens"] - paired["tokens_base"]).to_numpy()
    report = {
        "n_prompts": paired.height,
        "win_rate": result.as_dict(),
        "lc_win_rate": length_controlled_win_rate(won, length_diff),
        "tuned": _side(paired.select("score", "tokens")),
        "base": _side(paired.select(pl.col("score_base").alias("score"), pl.col("tokens_base").alias("tokens"))),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / "eval_report.json"
    output.write_text(json.dumps(report, indent=2, sort_keys=True))
    (out_dir / "eval_report.md").write_text(markdown_report(report))
    manifest = Manifest(
        stage="evaluate", unit="prompt", config={"n_boot": n_boot, "seed": seed},
        inputs=[input_ref(p) for p in (tuned_scores, tuned_responses, base_scores, base_responses)],
        outputs={"report": str(output)}, rows_in=len(all_ids), rows_out=paired.height,
        dropped={k: v for k, v in dropped.items() if v}, wall_time_s=time.perf_counter() - start,
    )  # fmt: skip
    return StageResult(output, None, manifest.write(manifest_path(output)))


def markdown_report(report: dict) -> str:
    wr = report["win_rate"]
    return "\n".join([
        "# Tuned vs base", "",
        f"Win rate of the tuned policy: **{wr['rate']:.1%}** (95% CI {wr['low']:.1%} – {wr['high']:.1%}; "
        f"{wr['wins']} wins, {wr['ties']} ties, {wr['losses']} losses over {wr['n']} prompts)",
        f"Length-controlled win rate: {report['lc_win_rate']:.1%}", "",
        "| policy | mean reward | mean tokens |", "|---|---|---|",
        f"| tuned | {report['tuned']['mean_reward']:.4f} | {report['tuned']['mean_tokens']:.1f} |",
        f"| base | {report['base']['mean_reward']:.4f} | {report['base']['mean_tokens']:.1f} |", "",
    ])  # fmt: skip
