"""The `prefsmith` command line. Instant commands call stage functions; pipeline work calls flows.

Every `PrefsmithError` (bad config, bad input, a stage that cannot go on) is printed as one line
and exits with code 2: no traceback for a user's mistake.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from prefsmith.schemas.config_base import StrictModel, parse_config, read_yaml
from prefsmith.schemas.errors import PrefsmithError

app = typer.Typer(
    name="prefsmith",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Prompts → responses → scores → pairs → weighted-DPO training, on Parquet, with Prefect.",
)
console = Console(stderr=True)
M = TypeVar("M", bound=StrictModel)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="YAML config (the stage's section or a whole pipeline config)"
    ),
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="output folder")]


def friendly_errors(command: Callable) -> Callable:
    """Turn a PrefsmithError into `error: <one line>` and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except PrefsmithError as error:
            console.print(
                f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(code=2) from None

    return wrapper


def stage_config(model: type[M], config_path: Path | None, section: str, /, **overrides) -> M:
    """Load `section` of a YAML file (or the whole file if it has no such key), then overrides."""
    data = read_yaml(config_path) if config_path else {}
    if section in data and isinstance(data[section], dict):
        data = data[section]
    data.update({k: v for k, v in overrides.items() if v is not None})
    return parse_config(model, data, section=section)


def report(result) -> None:
    console.print(f"[green]wrote[/] {result.output}")
    if result.quarantine is not None:
        console.print(f"      quarantine {result.quarantine}")
    console.print(f"      manifest   {result.manifest}")


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "httpcore"):  # every Prefect API call would be an INFO line
        logging.getLogger(noisy).setLevel(logging.WARNING)


@app.command()
@friendly_errors
def prompts(
    path: Path,
    out: OutOpt,
    config: ConfigOpt = None,
    prompt_field: str | None = None,
    system_prompt: str | None = None,
) -> None:
    """Load prompts (JSONL, Parquet, CSV or an HF dataset folder) into the prompts table."""
    from prefsmith.generation.prompts import load_prompts
    from prefsmith.schemas.data_configs import PromptsConfig

    cfg = stage_config(
        PromptsConfig,
        config,
        "prompts",
        path=str(path),
        prompt_field=prompt_field,
        system_prompt=system_prompt,
    )
    report(load_prompts({}, config=cfg, out_dir=out))


@app.command()
@friendly_errors
def generate(
    prompts_table: Annotated[Path, typer.Argument(metavar="PROMPTS")],
    out: OutOpt,
    config: ConfigOpt = None,
    model: str | None = None,
    backend: str | None = None,
) -> None:
    """Sample N responses per prompt (vLLM, transformers or OpenAI-compatible servers); resumable."""
    from prefsmith.generation.stage import generate as run
    from prefsmith.schemas.data_configs import GenerateConfig

    cfg = stage_config(GenerateConfig, config, "generate", model=model, backend=backend)
    report(run({"prompts": prompts_table}, config=cfg, out_dir=out))


@app.command()
@friendly_errors
def score(
    responses: Path,
    prompts_table: Annotated[Path, typer.Option("--prompts")],
    out: OutOpt,
    config: ConfigOpt = None,
    model: str | None = None,
) -> None:
    """Score every response with a reward model, ArmoRM, vLLM pooling or a rule; resumable."""
    from prefsmith.schemas.data_configs import ScoreConfig
    from prefsmith.scoring.stage import score as run

    cfg = stage_config(ScoreConfig, config, "score", model=model)
    report(run({"responses": responses, "prompts": prompts_table}, config=cfg, out_dir=out))


@app.command()
@friendly_errors
def pairs(
    scores: Path,
    responses: Annotated[Path, typer.Option()],
    prompts_table: Annotated[Path, typer.Option("--prompts")],
    out: OutOpt,
    config: ConfigOpt = None,
    strategy: str | None = None,
) -> None:
    """Curate chosen/rejected pairs that keep their score margins."""
    from prefsmith.curation.pairs import build_pairs
    from prefsmith.schemas.data_configs import PairsConfig

    cfg = stage_config(PairsConfig, config, "pairs", strategy=strategy)
    inputs = {"scores": scores, "responses": responses, "prompts": prompts_table}
    report(build_pairs(inputs, config=cfg, out_dir=out))


@app.command()
@friendly_errors
def export(
    pairs_table: Annotated[Path, typer.Argument(metavar="PAIRS")],
    out: Annotated[Path, typer.Option("--out", "-o", help="file (trl) or folder (hf)")],
    to: Annotated[str, typer.Option(help="trl-jsonl, trl-parquet or hf")] = "trl-jsonl",
) -> None:
    """Export pairs to TRL's prompt/chosen/rejected format or to an HF dataset folder."""
    from prefsmith.curation.export import export_hf_dataset, export_trl
    from prefsmith.schemas.errors import ConfigError

    if to == "hf":
        written = export_hf_dataset(pairs_table, out_dir=out)
    elif to in ("trl-jsonl", "trl-parquet"):
        written = export_trl(pairs_table, out=out, format=to.removeprefix("trl-"))
    else:
        raise ConfigError(f"--to: unknown format {to!r}; use trl-jsonl, trl-parquet or hf")
    console.print(f"[green]wrote[/] {written}")


@app.command()
@friendly_errors
def reference(
    pairs_table: Annotated[Path, typer.Argument(metavar="PAIRS")],
    out: OutOpt,
    config: ConfigOpt = None,
    model: str | None = None,
) -> None:
    """Add the reference model's log-probs to the pairs table (reused when the key matches)."""
    from prefsmith.training.reference import reference_pass

    cfg = reference_stage_config(config, model=model)
    report(reference_pass({"pairs": pairs_table}, config=cfg, out_dir=out))


def reference_stage_config(config_path: Path | None, *, model: str | None):
    """The reference section, or for a whole pipeline config its one rule (lengths from train)."""
    from prefsmith.schemas.pipeline_config import PipelineConfig
    from prefsmith.schemas.train_configs import ReferenceConfig

    data = read_yaml(config_path) if config_path else {}
    if isinstance(data.get("train"), dict) and "prompts" in data:
        reference = parse_config(PipelineConfig, data).reference_config()
        return reference.model_copy(update={"model": model}) if model else reference
    return stage_config(ReferenceConfig, config_path, "reference", model=model)


@app.command()
@friendly_errors
def train(
    pairs_table: Annotated[Path, typer.Argument(metavar="PAIRS")],
    out: OutOpt,
    config: ConfigOpt = None,
    policy: str | None = None,
) -> None:
    """Train the policy with the weighted-DPO loss family on HF Trainer (+ DeepSpeed; the
    config's `launch` section starts it across processes or nodes)."""
    from prefsmith.schemas.train_configs import TrainConfig
    from prefsmith.training.launch import launch_train as run

    cfg = stage_config(TrainConfig, config, "train", policy=policy)
    report(run({"pairs": pairs_table}, config=cfg, out_dir=out))


@app.command()
@friendly_errors
def tiny(out: Annotated[Path, typer.Argument(help="folder for the tiny models")]) -> None:
    """Build the tiny local tokenizer, policy and reward model (no downloads)."""
    from prefsmith.flows.tiny import build_tiny_setup

    paths = build_tiny_setup(out)
    for name in ("tokenizer", "policy", "reward_model"):
        console.print(f"{name:>12}: {getattr(paths, name)}")


# `prefsmith inspect` lives in its own module (many options); registered here like the others.
from prefsmith.flows.cli_eval import eval_command  # noqa: E402
from prefsmith.flows.cli_inspect import inspect as inspect_command  # noqa: E402
from prefsmith.flows.cli_serve import serve as serve_command  # noqa: E402

app.command("inspect")(friendly_errors(inspect_command))
app.command("eval")(friendly_errors(eval_command))
app.command("serve")(friendly_errors(serve_command))


@app.command()
@friendly_errors
def validate(config: Annotated[Path, typer.Argument(help="pipeline YAML")]) -> None:
    """Check a pipeline config without running anything: every problem on one line."""
    from prefsmith.schemas.pipeline_config import PipelineConfig

    parse_config(PipelineConfig, read_yaml(config))
    console.print(f"[green]ok[/] {config}")


@app.command()
@friendly_errors
def run(
    config: Annotated[Path, typer.Argument(help="pipeline YAML")],
    run_dir: Annotated[
        Path | None,
        typer.Option(
            "--run-dir",
            help="build into this folder (a re-run resumes it); default: a new dated folder",
        ),
    ] = None,
) -> None:
    """Run the whole pipeline flow from a YAML config into a new dated run folder."""
    from prefsmith.schemas.pipeline_config import PipelineConfig

    cfg = parse_config(PipelineConfig, read_yaml(config))
    from prefsmith.flows.pipeline import pipeline  # imports Prefect: only once the config is valid

    show_outputs(pipeline(cfg, run_dir=str(run_dir) if run_dir else None))


@app.command()
@friendly_errors
def quickstart(
    out: Annotated[Path, typer.Option("--out", "-o", help="where everything goes")] = Path(
        "runs/quickstart"
    ),
) -> None:
    """The main job: tiny local models, bundled prompts, the full pipeline on the CPU."""
    from prefsmith.flows.quickstart import run_quickstart

    show_outputs(run_quickstart(out.resolve()))


def show_outputs(outputs: dict[str, str]) -> None:
    """Print where every output is and, if there was an evaluation, the headline result."""
    import json

    from rich.table import Table

    from prefsmith.flows.cli_eval import headline

    table = Table(title="outputs", show_header=False)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")  # a path is only useful whole
    for name, path in outputs.items():
        table.add_row(name, path)
    Console().print(table)
    if "eval_report" in outputs:
        report = json.loads(Path(outputs["eval_report"]).read_text())
        Console().print(headline(report), highlight=False)


if __name__ == "__main__":
    app()
