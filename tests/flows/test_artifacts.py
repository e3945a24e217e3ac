"""The run summary of a finished run, read from its files: counts, pair quantiles, the training
metrics of the checkpoint's manifest, the evaluation headline and the build folder."""

from __future__ import annotations

import json

import polars as pl

from prefsmith.flows.artifacts import run_summary, run_summary_markdown
from prefsmith.schemas.manifest import Manifest, manifest_path

REPORT = {
    "win_rate": {"rate": 0.75, "low": 0.6, "high": 0.9, "n": 40},
    "lc_win_rate": 0.7,
    "length_adjusted_win_rate": {"rate": 0.7, "low": 0.55, "high": 0.85, "status": "ok"},
    "tuned": {"mean_reward": 0.5, "mean_tokens": 6.0},
    "base": {"mean_reward": 0.2, "mean_tokens": 12.5},
}


def finished_run(tmp_path):
    run = tmp_path / "20260101-000000"
    (run / "checkpoint" / "final").mkdir(parents=True)
    counts = [{"stage": "pairs", "rows_in": 8, "rows_out": 6, "dropped": "tie=2"}]
    (run / "summary.json").write_text(json.dumps({"counts": counts}))
    margins = [0.5, 1.0, 2.0, 4.0]
    pl.DataFrame(
        {"score_chosen": [m + 1 for m in margins], "score_rejected": [1.0] * 4, "margin": margins}
    ).write_parquet(run / "pairs.parquet")
    final = run / "checkpoint" / "final"
    Manifest(
        stage="train",
        unit="pair",
        config={},
        inputs=[],
        outputs={"checkpoint": str(final)},
        rows_in=6,
        rows_out=6,
        extra={"metrics": {"train_loss": 0.4123}},
    ).write(manifest_path(final))
    (run / "eval").mkdir()
    (run / "eval" / "eval_report.json").write_text(json.dumps(REPORT))
    return {
        "run_dir": str(run),
        "pairs": str(run / "pairs.parquet"),
        "checkpoint": str(final),
        "eval_report": str(run / "eval" / "eval_report.json"),
    }


def test_the_summary_holds_every_part_of_the_run(tmp_path):
    outputs = finished_run(tmp_path)
    summary = run_summary(outputs)
    assert summary["counts"][0]["rows_out"] == 6
    quantiles = {row["quantile"]: row for row in summary["pair_quantiles"]}
    assert quantiles[1.0]["margin"] == 4.0 and quantiles[0.0]["margin"] == 0.5
    assert summary["training"] == {"train_loss": 0.4123}
    assert "win rate 75.0% (95% CI 60.0%–90.0%, n=40)" in summary["evaluation"]
    markdown = run_summary_markdown(summary)
    assert f"[{summary['run_dir']}](file://{summary['run_dir']})" in markdown
    assert "| train_loss | 0.4123 |" in markdown and "| pairs | 8 | 6 | tie=2 |" in markdown


def test_quantiles_never_show_minus_zero(tmp_path):
    from prefsmith.flows.artifacts import pair_quantiles

    path = tmp_path / "pairs.parquet"
    pl.DataFrame(
        {"score_chosen": [-0.0, -1e-9], "score_rejected": [-1.0, -2.0], "margin": [1.0, 2.0]}
    ).write_parquet(path)
    shown = [str(row["score_chosen"]) for row in pair_quantiles(path)]
    assert "-0.0" not in shown and "0.0" in shown


def test_a_dataset_only_run_has_no_training_or_evaluation_part(tmp_path):
    outputs = finished_run(tmp_path)
    summary = run_summary({k: outputs[k] for k in ("run_dir", "pairs")})
    assert summary["training"] == {} and summary["evaluation"] == ""
    markdown = run_summary_markdown(summary)
    assert "## Training" not in markdown and "## Evaluation" not in markdown
    assert "## Pair scores" in markdown
