"""Compare a tuned policy with its base on the same held-out prompts, both scored by one scorer.

Inputs are the scores and responses tables of each policy's generations. Scores are averaged per
prompt (when N > 1 samples) and paired on `prompt_id`; a prompt missing on either side is
dropped and counted. Optional inputs from the other evaluation stages: the KL samples
(`prefsmith.evaluation.kl`), the held-out pair margins (`prefsmith.evaluation.preference_accuracy`) and the lm-eval
result (`prefsmith.evaluation.lm_eval_hook`). Output: `eval_report.json`, `eval_report.md` and the
self-contained `eval_report.html`.

`eval_report.json` keys (always present; a part that was not computed is null):
`n_prompts`, `win_rate` {rate, low, high, n, wins, ties, losses}, `length_adjusted_win_rate`
{rate, low, high, n, length_coef, length_sd, status, method} (prefsmith.evaluation.length_adjusted),
`tuned` / `base` {mean_reward, mean_tokens, n_prompts}, `kl` (prefsmith.evaluation.kl.summarize_kl),
`heldout_pairs` {n_pairs, accuracy, mean_margin, ties}, `lm_eval` {status, tasks, message, results},
`examples` {best_wins, worst_losses, random: [{prompt_id, prompt, tuned, base, reward_tuned,
reward_base}]} (prefsmith.evaluation.examples; `prompt` is null without the optional `prompts`),
`labels` {tuned, base}: what the report calls its sides (rounds: "round 2" vs "round 1"),
`judge` {name, training_scorer, warning} or null, `by_scorer` [{scorer, rate, low, high, n,
training_scorer}] (prefsmith.evaluation.judges; from the optional `tuned_scores:<name>` and
`base_scores:<name>` inputs).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import polars as pl

from prefsmith.evaluation.examples import example_table, pick_examples
from prefsmith.evaluation.judges import by_scorer, judge_lines, judge_part, scorer_inputs
from prefsmith.evaluation.kl import KL_SAMPLES, summarize_kl
from prefsmith.evaluation.length_adjusted import LENGTH_ADJUSTED_NOTE, length_adjusted_win_rate
from prefsmith.evaluation.preference_accuracy import MARGINS, preference_accuracy
from prefsmith.evaluation.report_html import render_eval_html, side_labels
from prefsmith.evaluation.winrate import outcomes, win_rate
from prefsmith.inspection.figures import write_plotly_js
from prefsmith.schemas.eval_configs import CompareConfig
from prefsmith.schemas.io import read_frame, write_text
from prefsmith.schemas.manifest import (
    Inputs,
    Manifest,
    StageResult,
    input_path,
    input_ref,
    manifest_path,
    optional_path,
)
from prefsmith.schemas.tables import RESPONSES, SCORES

REPORT_KEYS = (
    "n_prompts",
    "win_rate",
    "length_adjusted_win_rate",
    "tuned",
    "base",
    "kl",
    "heldout_pairs",
    "lm_eval",
    "examples",
    "labels",
    "judge",
    "by_scorer",
)


def scored_responses(scores: Path, responses: Path) -> pl.DataFrame:
    """response_id, prompt_id, score, tokens (completion tokens of the generator) — one row per response."""
    return (
        read_frame(scores, SCORES)
        .join(
            read_frame(responses, RESPONSES).select(
                "response_id", pl.col("n_tokens").alias("tokens")
            ),
            on="response_id",
            how="left",
        )
        .select("response_id", "prompt_id", "score", "tokens")
    )


def per_prompt(scored: pl.DataFrame) -> pl.DataFrame:
    """prompt_id, mean score, mean response tokens, samples — one row per prompt."""
    return scored.group_by("prompt_id").agg(
        pl.col("score").mean().alias("score"),
        pl.col("tokens").mean().alias("tokens"),
        pl.len().alias("samples"),
    )


def _side(frame: pl.DataFrame) -> dict[str, float | int]:
    return {
        "mean_reward": float(frame["score"].mean()),
        "mean_tokens": float(frame["tokens"].mean()),
        "n_prompts": frame.height,
    }


def _optional(*, kl: Path | None, heldout: Path | None, lm_eval: Path | None):
    """(kl samples, margins, report parts) of the optional inputs; None where not given."""
    kl_samples = read_frame(kl, KL_SAMPLES) if kl else None
    margins = read_frame(heldout, MARGINS) if heldout else None
    parts = {
        "kl": summarize_kl(kl_samples) if kl_samples is not None else None,
        "heldout_pairs": preference_accuracy(margins["margin"].to_numpy())
        if margins is not None
        else None,
        "lm_eval": json.loads(Path(lm_eval).read_text()) if lm_eval else None,
    }
    return kl_samples, margins, parts


def paired_prompts(tuned_rows: pl.DataFrame, base_rows: pl.DataFrame):
    """Per-prompt tuned and base rows joined on prompt_id, and the prompts either side lacks."""
    tuned, base = per_prompt(tuned_rows), per_prompt(base_rows)
    paired = tuned.join(base, on="prompt_id", suffix="_base").sort("prompt_id")
    all_ids = set(tuned["prompt_id"]) | set(base["prompt_id"])
    dropped = {
        "missing_in_tuned": len(all_ids - set(tuned["prompt_id"])),
        "missing_in_base": len(all_ids - set(base["prompt_id"])),
    }
    return paired, len(all_ids), {k: v for k, v in dropped.items() if v}


def headline(paired: pl.DataFrame, *, config: CompareConfig) -> dict:
    """Win rate with its bootstrap interval, length-adjusted win rate, and each side's reward and length."""
    tuned_score, base_score = paired["score"].to_numpy(), paired["score_base"].to_numpy()
    result = win_rate(tuned_score, base_score, n_boot=config.n_boot, seed=config.seed)
    length_diff = (paired["tokens"] - paired["tokens_base"]).to_numpy()
    base = paired.select(pl.col("score_base").alias("score"), pl.col("tokens_base").alias("tokens"))
    return {
        "n_prompts": paired.height,
        "win_rate": result.as_dict(),
        "length_adjusted_win_rate": length_adjusted_win_rate(
            outcomes(tuned_score, base_score), length_diff=length_diff
        ).as_dict(),
        "tuned": _side(paired.select("score", "tokens")),
        "base": _side(base),
    }


def compare_policies(inputs: Inputs, *, config: CompareConfig, out_dir: Path) -> StageResult:
    """Win rate (ties half, 95% bootstrap), length-adjusted win rate, mean reward and length of each policy,
    plus the KL, held-out accuracy and lm-eval parts when their outputs are given.

    Inputs: `tuned_scores`, `tuned_responses`, `base_scores`, `base_responses`; optional `kl`,
    `heldout` (margins) and `lm_eval`.
    """
    start = time.perf_counter()
    sides = {
        side: scored_responses(
            input_path(inputs, f"{side}_scores"), input_path(inputs, f"{side}_responses")
        )
        for side in ("tuned", "base")
    }
    paired, n_prompts, dropped = paired_prompts(sides["tuned"], sides["base"])
    optional = {name: optional_path(inputs, name) for name in ("kl", "heldout", "lm_eval")}
    kl_samples, margins, parts = _optional(**optional)
    report = {**headline(paired, config=config), **parts, "labels": config.labels}
    report["judge"] = judge_part(config)
    report["by_scorer"] = by_scorer(scorer_inputs(inputs), config=config)
    examples = example_table(
        paired,
        tuned=input_path(inputs, "tuned_responses"),
        base=input_path(inputs, "base_responses"),
        prompts=optional_path(inputs, "prompts"),
    )
    report["examples"] = pick_examples(examples, seed=config.seed)
    out_dir = Path(out_dir)
    outputs = write_reports(
        report,
        out_dir=out_dir,
        page=render_eval_html(
            report,
            tuned=sides["tuned"],
            base=sides["base"],
            paired=paired,
            kl_samples=kl_samples,
            margins=margins,
            sources={s: str(inputs[f"{s}_scores"]) for s in ("tuned", "base")},
        ),
    )
    manifest = Manifest(
        stage="evaluate",
        unit="prompt",
        config=config.model_dump(mode="json"),
        inputs=[input_ref(p) for p in inputs.values() if p],
        outputs=outputs,
        rows_in=n_prompts,
        rows_out=paired.height,
        dropped=dropped,
        wall_time_s=time.perf_counter() - start,
    )
    output = Path(outputs["report"])
    return StageResult(output, None, manifest.write(manifest_path(output)))


def write_reports(report: dict, *, out_dir: Path, page: str) -> dict[str, str]:
    """`eval_report.json`, `.md` and `.html` in `out_dir`; returns their paths by kind."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: out_dir / f"eval_report.{k}" for k in ("json", "md", "html")}
    write_text(json.dumps(report, indent=2, sort_keys=True), paths["json"])
    write_text(markdown_report(report), paths["md"])
    write_text(page, paths["html"])
    write_plotly_js(out_dir)  # the page's charts load it from beside the page
    return {"report": str(paths["json"]), "markdown": str(paths["md"]), "html": str(paths["html"])}


def _fmt(x: float | None, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def _extra_lines(report: dict) -> list[str]:
    kl, acc, lm = report["kl"], report["heldout_pairs"], report["lm_eval"]
    lines = ["## KL(tuned ‖ reference) on the tuned samples", ""]
    if kl is None:
        lines.append("not computed")
    else:
        lines.append(
            f"{_fmt(kl['kl_seq_mean'], '.4g')} nats per sequence (± {_fmt(kl['kl_seq_se'], '.2g')} s.e., "
            f"k1 over {kl['n_samples']} samples); k3 estimator {_fmt(kl['k3_seq_mean'], '.4g')}; "
            f"per token {_fmt(kl['kl_per_token'], '.4g')}"
        )
    lines += ["", "## Held-out pairs (implicit reward of tuned vs reference)", ""]
    if acc is None:
        lines.append("not computed")
    else:
        lines.append(
            f"accuracy {_fmt(acc['accuracy'], '.1%')} over {acc['n_pairs']} pairs; "
            f"mean margin {_fmt(acc['mean_margin'], '.4g')} nats"
        )
    lines += ["", "## lm-eval", "", lm["message"] if lm else "not run", ""]
    return lines


def length_adjusted_line(la: dict) -> str:
    """The length-adjusted win rate with its interval, or why it has none."""
    if la["rate"] is None:
        return f"Length-adjusted win rate: not estimable ({la['status']})"
    return (
        f"Length-adjusted win rate: {la['rate']:.1%} (95% CI {la['low']:.1%} – {la['high']:.1%}; "
        "at equal response length)"
    )


def markdown_report(report: dict) -> str:
    wr = report["win_rate"]
    return "\n".join(
        [
            f"# {side_labels(report)}",
            "",
            f"Win rate of the tuned policy: **{wr['rate']:.1%}** (95% CI {wr['low']:.1%} – {wr['high']:.1%}; "
            f"{wr['wins']} wins, {wr['ties']} ties, {wr['losses']} losses over {wr['n']} prompts)",
            length_adjusted_line(report["length_adjusted_win_rate"]),
            "",
            *judge_lines(report),
            LENGTH_ADJUSTED_NOTE,
            "",
            "| policy | mean reward | mean tokens |",
            "|---|---|---|",
            f"| tuned | {report['tuned']['mean_reward']:.4f} | {report['tuned']['mean_tokens']:.1f} |",
            f"| base | {report['base']['mean_reward']:.4f} | {report['base']['mean_tokens']:.1f} |",
            "",
            *_extra_lines(report),
            *_example_lines(report.get("examples")),
        ]
    )


def _example_lines(examples: dict | None) -> list[str]:
    """The examples' prompts and rewards (their texts are in the HTML report and the JSON)."""
    if not examples:
        return []
    lines = ["", "## Examples (texts in eval_report.html)"]
    for kind in ("best_wins", "worst_losses"):
        lines.append(f"- {kind.replace('_', ' ')}:")
        for item in examples[kind]:
            prompt = " ".join((item["prompt"] or item["prompt_id"]).split())[:80]
            lines.append(f"  - {item['reward_tuned']:.3f} vs {item['reward_base']:.3f} — {prompt}")
    return lines
