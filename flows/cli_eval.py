"""The `prefsmith eval` command (registered in prefsmith.flows.cli): evaluate a checkpoint against its base.

Pipeline work, so it runs the `evaluate` flow (Prefect's temporary server unless PREFECT_API_URL
is set). Given a pipeline run folder it finds the held-out prompts (`prompts.heldout.parquet`) and
the checkpoint (`checkpoint/final`) there; either can be given explicitly instead. The config's
`prompts:` section is not needed (eval samples the held-out table). Prefect's run records go to
`<out>/logs/prefect.log` while the flow runs (prefsmith.flows.console.prefect_runs_to_log), so a
failed eval prints one `error:` line.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

RUN_DIR_HELDOUT = "prompts.heldout.parquet"
RUN_DIR_CHECKPOINT = Path("checkpoint") / "final"


def resolve_inputs(
    *, run_dir: Path | None, checkpoint: Path | None, heldout: Path | None, out: Path | None
) -> tuple[Path, Path, Path]:
    """(checkpoint, held-out prompts, output run folder) from the options, each checked to exist."""
    from prefsmith.schemas.errors import ConfigError, InputError

    if run_dir is None and (checkpoint is None or heldout is None or out is None):
        raise ConfigError("eval: give --run-dir, or all of --checkpoint, --heldout and --out")
    checkpoint = checkpoint or run_dir / RUN_DIR_CHECKPOINT
    heldout = heldout or run_dir / RUN_DIR_HELDOUT
    for name, path in (("--checkpoint", checkpoint), ("--heldout", heldout)):
        if not path.exists():
            raise InputError(f"eval: {name} not found: {path}")
    return checkpoint, heldout, out or run_dir


def eval_sections(data: dict, *, heldout: Path) -> dict:
    """The YAML's sections for eval: the evaluate flow never reads `prompts:` (it samples the
    held-out table), so a config without one gets the held-out table there, only to parse."""
    if "prompts" in data:
        return data
    return {**data, "prompts": {"path": str(heldout)}}


def headline(report: dict) -> str:
    """One paragraph: win rate and length-adjusted win rate with their intervals, rewards, lengths,
    KL, accuracy, lm-eval."""
    from prefsmith.evaluation.report_html import side_labels

    wr, tuned, base = report["win_rate"], report["tuned"], report["base"]
    la = report["length_adjusted_win_rate"]
    adjusted = (
        f"{la['rate']:.1%} (95% CI {la['low']:.1%}–{la['high']:.1%})"
        if la["rate"] is not None
        else f"not estimable ({la['status']})"
    )
    lines = [
        f"{side_labels(report).lower()}: win rate {wr['rate']:.1%} (95% CI {wr['low']:.1%}–{wr['high']:.1%}, n={wr['n']}), "
        f"length-adjusted {adjusted}; mean reward {tuned['mean_reward']:.3f} vs "
        f"{base['mean_reward']:.3f}; mean tokens {tuned['mean_tokens']:.1f} vs {base['mean_tokens']:.1f}"
    ]
    if (kl := report.get("kl")) and kl["kl_seq_mean"] is not None:
        lines.append(
            f"KL(tuned ‖ reference): {kl['kl_seq_mean']:.3f} nats per sample ({kl['kl_per_token']:.4f} per token)"
        )
    if (acc := report.get("heldout_pairs")) and acc["accuracy"] is not None:
        lines.append(
            f"held-out pairs: accuracy {acc['accuracy']:.1%} of {acc['n_pairs']}, mean margin {acc['mean_margin']:.3f}"
        )
    if (lm := report.get("lm_eval")) and lm["status"] != "not_requested":
        lines.append(lm["message"])
    if judge := report.get("judge"):
        others = [r for r in report.get("by_scorer") or [] if r["scorer"] != judge["name"]]
        lines.append(
            f"judged by {judge['name']}"
            + "".join(
                f"; {r['scorer']}: {r['rate']:.1%} ({r['low']:.1%}–{r['high']:.1%})" for r in others
            )
        )
        if judge["warning"]:
            lines.append(f"warning: {judge['warning']}")
    return "\n".join(lines)


def eval_command(
    config: Annotated[
        Path, typer.Argument(help="pipeline YAML (its generate, score and evaluate sections)")
    ],
    run_dir: Annotated[
        Path | None,
        typer.Option(
            "--run-dir",
            help="a pipeline run folder: held-out prompts and checkpoint/final are taken from it, the report goes to <run-dir>/eval",
        ),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint", help="tuned checkpoint folder [default: <run-dir>/checkpoint/final]"
        ),
    ] = None,
    heldout: Annotated[
        Path | None,
        typer.Option(
            "--heldout", help="held-out prompts table [default: <run-dir>/prompts.heldout.parquet]"
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="folder that gets eval/ [default: --run-dir]")
    ] = None,
    lm_eval_task: Annotated[
        list[str] | None,
        typer.Option(
            "--lm-eval-task",
            help="lm-eval task to run on the checkpoint (repeatable; needs lm-eval)",
        ),
    ] = None,
) -> None:
    """Evaluate a tuned checkpoint against its base on held-out prompts (win rate, KL, accuracy)."""
    from rich.console import Console

    from prefsmith.evaluation.leakage import heldout_leak_warning
    from prefsmith.schemas.config_base import parse_config, read_yaml
    from prefsmith.schemas.pipeline_config import EvalConfig, PipelineConfig

    ckpt, prompts, folder = resolve_inputs(
        run_dir=run_dir, checkpoint=checkpoint, heldout=heldout, out=out
    )
    cfg = parse_config(PipelineConfig, eval_sections(read_yaml(config), heldout=prompts))
    if leak := heldout_leak_warning(ckpt, prompts):
        logging.getLogger(__name__).warning(leak)
    ev = cfg.evaluate or EvalConfig()
    if lm_eval_task:
        ev = ev.model_copy(update={"lm_eval_tasks": [*ev.lm_eval_tasks, *lm_eval_task]})
    cfg = cfg.model_copy(update={"evaluate": ev})
    from prefsmith.flows.console import log_runs_in, prefect_runs_to_log
    from prefsmith.flows.evaluate import evaluate  # imports Prefect: only once the inputs are valid

    with prefect_runs_to_log():  # a failure is our one `error:` line, its traceback in the log
        log_runs_in(folder)  # <folder>/logs/prefect.log, beside the build's own records
        report_path = Path(evaluate(cfg, str(ckpt), str(prompts), str(folder)))
    console = Console()
    console.print(headline(json.loads(report_path.read_text())), highlight=False, soft_wrap=True)
    for suffix in (".json", ".md", ".html"):
        console.print(f"[green]wrote[/] {report_path.with_suffix(suffix)}", soft_wrap=True)
