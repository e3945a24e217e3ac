"""`prefsmith eval`: inputs found in a run folder, options merged into the config, the headline
printed; user mistakes end in one line. The flow itself is replaced by a recorder here (the
real flow runs in test_evaluate_flow.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import prefsmith.flows.evaluate
from prefsmith.flows.cli import friendly_errors
from prefsmith.flows.cli_eval import eval_command, headline
from prefsmith.flows.quickstart import quickstart_config

REPORT = {
    "n_prompts": 40,
    "length_adjusted_win_rate": {"rate": 0.7, "low": 0.55, "high": 0.82, "status": "ok"},
    "win_rate": {
        "rate": 0.75,
        "low": 0.62,
        "high": 0.86,
        "n": 40,
        "wins": 28,
        "ties": 4,
        "losses": 8,
    },
    "tuned": {"mean_reward": 0.8, "mean_tokens": 6.0, "n_prompts": 40},
    "base": {"mean_reward": 0.2, "mean_tokens": 20.0, "n_prompts": 40},
    "kl": {
        "n_samples": 80,
        "kl_seq_mean": 3.5,
        "kl_seq_se": 0.2,
        "k3_seq_mean": 2.0,
        "kl_per_token": 0.5,
        "tokens_mean": 7.0,
    },
    "heldout_pairs": {"n_pairs": 30, "accuracy": 0.9, "mean_margin": 4.25, "ties": 0},
    "lm_eval": {
        "status": "not_installed",
        "tasks": ["arc_easy"],
        "results": {},
        "message": "lm-eval is not installed; skipped tasks: arc_easy",
    },
}


def app() -> typer.Typer:
    cli = typer.Typer()
    cli.command("eval")(friendly_errors(eval_command))

    @cli.callback()
    def main() -> None:  # keeps `eval` a subcommand, as in prefsmith.flows.cli
        pass

    return cli


@pytest.fixture
def run_dir(tmp_path):
    (tmp_path / "run" / "checkpoint" / "final").mkdir(parents=True)
    (tmp_path / "run" / "prompts.heldout.parquet").write_bytes(b"")
    config = tmp_path / "pipeline.yaml"
    config.write_text(json.dumps(quickstart_config(tmp_path, tmp_path / "policy")))  # JSON is YAML
    return tmp_path / "run", config


def test_run_dir_supplies_inputs_and_headline_is_printed(run_dir, monkeypatch):
    run, config = run_dir
    calls = []

    def fake_evaluate(cfg, checkpoint, heldout, out):
        calls.append((cfg.evaluate, checkpoint, heldout, out))
        report = Path(out) / "eval" / "eval_report.json"
        report.parent.mkdir(parents=True)
        report.write_text(json.dumps(REPORT))
        return str(report)

    monkeypatch.setattr(prefsmith.flows.evaluate, "evaluate", fake_evaluate)
    done = CliRunner().invoke(
        app(),
        ["eval", str(config), "--run-dir", str(run), "--lm-eval-task", "arc_easy"],
        terminal_width=200,
    )
    assert done.exit_code == 0, done.output
    ev, checkpoint, heldout, out = calls[0]
    assert (checkpoint, heldout, out) == (
        str(run / "checkpoint" / "final"),
        str(run / "prompts.heldout.parquet"),
        str(run),
    )
    assert (
        ev.lm_eval_tasks == ["arc_easy"] and ev.n_boot == 2000
    )  # the YAML's evaluate section, plus the option
    assert (
        "win rate 75.0% (95% CI 62.0%–86.0%, n=40), length-adjusted 70.0% (95% CI 55.0%–82.0%)"
        in done.output
    )
    assert "KL(tuned ‖ reference): 3.500 nats per sample" in done.output
    assert "held-out pairs: accuracy 90.0% of 30" in done.output
    assert "lm-eval is not installed; skipped tasks: arc_easy" in done.output
    assert "eval_report.html" in done.output


def test_missing_inputs_are_one_line(run_dir, tmp_path):
    run, config = run_dir
    done = CliRunner().invoke(app(), ["eval", str(config), "--checkpoint", str(run)])
    assert (
        done.exit_code == 2
        and done.output.strip()
        == "error: eval: give --run-dir, or all of --checkpoint, --heldout and --out"
    )
    done = CliRunner().invoke(
        app(),
        ["eval", str(config), "--run-dir", str(run), "--heldout", str(tmp_path / "nope.parquet")],
    )
    assert (
        done.exit_code == 2
        and done.output.strip() == f"error: eval: --heldout not found: {tmp_path / 'nope.parquet'}"
    )


def test_headline_leaves_out_what_was_not_computed():
    text = headline(
        {
            **REPORT,
            "kl": None,
            "heldout_pairs": None,
            "lm_eval": {"status": "not_requested", "message": "x"},
        }
    )
    assert text.count("\n") == 0 and text.startswith("tuned vs base: win rate 75.0%")
