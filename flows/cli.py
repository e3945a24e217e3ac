"""The `prefsmith` command line. Instant commands call stage functions; pipeline work calls flows.

Every `PrefsmithError` (bad config, bad input, a stage that cannot go on) is printed as one line
per problem and exits with code 2: no traceback for a user's mistake. Option help is taken from
the config field an option overrides (`field_help`), so it is written once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import typer
from rich.console import Console
from rich.markup import escape

from prefsmith.flows.cli_checks import parquet_arguments, stage_checks, stage_config
from prefsmith.flows.cli_flags import plain_flags
from prefsmith.flows.prefect_setup import prefect_server_errors
from prefsmith.schemas.config_base import StrictModel, parse_config, read_yaml
from prefsmith.schemas.data_configs import (
    GenerateConfig,
    PairsConfig,
    PromptsConfig,
    ScoreConfig,
    SplitConfig,
)
from prefsmith.schemas.errors import PrefsmithError
from prefsmith.schemas.train_configs import ReferenceConfig, TrainConfig

app = typer.Typer(
    name="prefsmith",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # inherited by every command
    help="Prompts → responses → scores → pairs → weighted-DPO training, on Parquet, with Prefect.",
)
plain_flags()
console = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="YAML config (the stage's section or a whole pipeline config)"
    ),
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="output folder")]


def _literal_values(annotation: Any) -> list[str]:
    if get_origin(annotation) is Literal:
        return [str(value) for value in get_args(annotation)]
    return [value for arg in get_args(annotation) for value in _literal_values(arg)]


def field_help(model: type[StrictModel], name: str, /, fallback: str = "") -> str:
    """An option's help from the config field it overrides (its description is written once, in
    the model), with the allowed values of a Literal field listed."""
    info = model.model_fields[name]
    text = info.description or fallback or name.replace("_", " ")
    values = _literal_values(info.annotation)
    return f"{text}; one of: {', '.join(values)}" if values else text


def friendly_errors(command: Callable) -> Callable:
    """Turn a PrefsmithError into `error: <line>` per problem (preflight lists several) and exit
    code 2; a Prefect server that never answered is one of them (flows.prefect_setup)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            with prefect_server_errors():
                return command(*args, **kwargs)
        except PrefsmithError as error:
            for line in str(error).splitlines() or [type(error).__name__]:
                console.print(
                    f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True
                )
            raise typer.Exit(code=2) from None

    return wrapper


def report(result) -> None:
    console.print(f"[green]wrote[/] {result.output}")
    if result.quarantine is not None:
        console.print(f"      quarantine {result.quarantine}")
    console.print(f"      manifest   {result.manifest}")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"prefsmith {metadata.version('prefsmith')}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="show every log line, third-party ones too")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    from prefsmith.flows.console import configure
    from prefsmith.flows.prefect_setup import use_prefect_defaults

    configure(verbose=verbose)
    use_prefect_defaults()  # every command: before any of them imports Prefect


@app.command()
@friendly_errors
def prompts(
    path: Annotated[Path, typer.Argument(help=field_help(PromptsConfig, "path"))],
    out: OutOpt,
    config: ConfigOpt = None,
    prompt_field: Annotated[
        str | None, typer.Option(help=field_help(PromptsConfig, "prompt_field"))
    ] = None,
    system_prompt: Annotated[
        str | None, typer.Option(help=field_help(PromptsConfig, "system_prompt"))
    ] = None,
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
    stage_checks(out=out)
    report(load_prompts({}, config=cfg, out_dir=out))


@app.command()
@friendly_errors
def split(
    prompts_table: Annotated[Path, typer.Argument(metavar="PROMPTS", help="prompts table")],
    out: OutOpt,
    heldout_fraction: Annotated[
        float | None, typer.Option(help=field_help(SplitConfig, "heldout_fraction"))
    ] = None,
) -> None:
    """Split prompts into train and held-out tables by id hash (a prompt keeps its side)."""
    from prefsmith.generation.split import split_prompts
    from prefsmith.schemas.manifest import Manifest

    cfg = stage_config(SplitConfig, None, "split", heldout_fraction=heldout_fraction)
    stage_checks(out=out)
    result = split_prompts({"prompts": prompts_table}, config=cfg, out_dir=out)
    sides = Manifest.read(result.manifest).rows_written
    console.print(f"split: {sides['prompts_train']} train, {sides['prompts_heldout']} held out")
    report(result)
    console.print(f"      held out   {result.more['prompts_heldout']}")


@app.command()
@friendly_errors
def generate(
    prompts_table: Annotated[Path, typer.Argument(metavar="PROMPTS", help="prompts table")],
    out: OutOpt,
    config: ConfigOpt = None,
    model: Annotated[str | None, typer.Option(help=field_help(GenerateConfig, "model"))] = None,
    backend: Annotated[
        str | None, typer.Option(help=field_help(GenerateConfig, "backend", "generation engine"))
    ] = None,
) -> None:
    """Sample N responses per prompt (vLLM, transformers or OpenAI-compatible servers); resumable."""
    from prefsmith.generation.stage import generate as run
    from prefsmith.schemas.data_configs import GenerateConfig

    cfg = stage_config(GenerateConfig, config, "generate", model=model, backend=backend)
    stage_checks(out=out, models=(cfg.model if cfg.backend != "openai" else None,))
    report(run({"prompts": prompts_table}, config=cfg, out_dir=out))


@app.command()
@friendly_errors
def score(
    responses: Annotated[Path, typer.Argument(help="responses table (file or shard folder)")],
    prompts_table: Annotated[Path, typer.Option("--prompts", help="prompts table")],
    out: OutOpt,
    config: ConfigOpt = None,
    model: Annotated[str | None, typer.Option(help=field_help(ScoreConfig, "model"))] = None,
    scorer: Annotated[
        str | None, typer.Option(help="which one, where score: lists several")
    ] = None,
) -> None:
    """Score every response: a reward model, ArmoRM, vLLM pooling, a rule or an LLM judge."""
    from prefsmith.schemas.data_configs import ScoreConfig
    from prefsmith.scoring.stage import score as run

    cfg = stage_config(ScoreConfig, config, "score", pick=scorer, model=model)
    stage_checks(out=out, models=(cfg.model,))
    report(run({"responses": responses, "prompts": prompts_table}, config=cfg, out_dir=out))


@app.command()
@friendly_errors
def pairs(
    scores: Annotated[Path, typer.Argument(help="scores table (file or shard folder)")],
    responses: Annotated[Path, typer.Option(help="responses table (the texts)")],
    prompts_table: Annotated[Path, typer.Option("--prompts", help="prompts table")],
    out: OutOpt,
    config: ConfigOpt = None,
    strategy: Annotated[
        str | None,
        typer.Option(help=field_help(PairsConfig, "strategy", "how pairs are chosen per prompt")),
    ] = None,
) -> None:
    """Curate chosen/rejected pairs that keep their score margins."""
    from prefsmith.curation.pairs import build_pairs
    from prefsmith.schemas.data_configs import PairsConfig

    cfg = stage_config(PairsConfig, config, "pairs", strategy=strategy)
    stage_checks(out=out)
    inputs = {"scores": scores, "responses": responses, "prompts": prompts_table}
    report(build_pairs(inputs, config=cfg, out_dir=out))


@app.command()
@friendly_errors
def export(
    pairs_table: Annotated[
        Path, typer.Argument(metavar="PAIRS", help="pairs table (with reference log-probs or not)")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="file (trl) or folder (hf)")],
    to: Annotated[
        str, typer.Option(help="output format; one of: trl-jsonl, trl-parquet, hf")
    ] = "trl-jsonl",
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
    pairs_table: Annotated[Path, typer.Argument(metavar="PAIRS", help="pairs table")],
    out: OutOpt,
    config: ConfigOpt = None,
    model: Annotated[str | None, typer.Option(help=field_help(ReferenceConfig, "model"))] = None,
) -> None:
    """Add the reference model's log-probs to the pairs table (reused when the key matches)."""
    from prefsmith.training.reference import reference_pass

    cfg = reference_stage_config(config, model=model)
    stage_checks(out=out, models=(cfg.model,))
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
    pairs_table: Annotated[
        Path,
        typer.Argument(
            metavar="PAIRS",
            help="pairs table with reference log-probs (not needed for a reference-free loss, "
            "or with train.adapter: the base is the reference)",
        ),
    ],
    out: OutOpt,
    config: ConfigOpt = None,
    policy: Annotated[str | None, typer.Option(help=field_help(TrainConfig, "policy"))] = None,
) -> None:
    """Train the policy with the weighted-DPO loss family on HF Trainer (+ DeepSpeed; the
    config's `launch` section starts it across processes or nodes)."""
    from prefsmith.schemas.train_configs import TrainConfig
    from prefsmith.training.launch import launch_train as run

    cfg = stage_config(TrainConfig, config, "train", policy=policy)
    stage_checks(out=out, models=(cfg.policy,))
    report(run({"pairs": pairs_table}, config=cfg, out_dir=out))


@app.command("import")
@friendly_errors
def import_command(
    path: Annotated[
        Path, typer.Argument(help="JSONL, Parquet or CSV file, or an HF dataset folder")
    ],
    out: OutOpt,
    config: ConfigOpt = None,
    shape: Annotated[
        str | None, typer.Option(help="pairs | hh | responses (default: pairs)")
    ] = None,
) -> None:
    """Import an existing preference dataset: pairs with their scores (ultrafeedback_binarized,
    TRL formats), Anthropic HH transcripts, or N scored responses per prompt."""
    from prefsmith.curation.importer import import_preferences
    from prefsmith.schemas.import_config import ImportConfig

    cfg = stage_config(ImportConfig, config, "import", path=str(path), shape=shape)
    stage_checks(out=out)
    result = import_preferences({}, config=cfg, out_dir=out)
    report(result)
    for name, table in result.more.items():
        console.print(f"      {name:<10} {table}")


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

app.command("inspect")(
    friendly_errors(
        parquet_arguments(inspect_command, "pairs", "against", "scores", "against_scores")
    )
)
app.command("eval")(friendly_errors(eval_command))
app.command("serve")(friendly_errors(serve_command))


@app.command()
@friendly_errors
def validate(
    config: Annotated[Path, typer.Argument(help="pipeline YAML")],
    schema_only: Annotated[
        bool,
        typer.Option(
            "--schema-only",
            help="check keys and values only, not the files and folders the config names "
            "(a config written for another machine)",
        ),
    ] = False,
) -> None:
    """Preflight a pipeline config without running anything: keys, values, input files, model
    folders, rule scorers and the output folder; one problem per line, exit code 2."""
    from prefsmith.flows.preflight import preflight

    preflight(read_yaml(config), files=not schema_only)
    console.print(f"[green]ok[/] {config}")


# `run` and `quickstart` (pipeline flows, then the outputs table) live in flows/cli_run.py.
from prefsmith.flows.cli_run import quickstart as quickstart_command  # noqa: E402
from prefsmith.flows.cli_run import run as run_command  # noqa: E402

app.command("run")(friendly_errors(run_command))
app.command("quickstart")(friendly_errors(quickstart_command))


if __name__ == "__main__":
    app()
