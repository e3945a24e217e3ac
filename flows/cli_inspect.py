"""The `prefsmith inspect` command (registered in prefsmith.flows.cli with `app.command()`).

An instant command: it calls the stage function `prefsmith.inspection.inspect.inspect_pairs` directly (no
Prefect), prints rich tables to stdout and writes the self-contained HTML report. With
`-c pipeline.yaml` (or a train YAML) Uni-DPO's w_qual and MADPO's weights are previewed with the
parameters of that config's loss terms; otherwise, and for a loss the config does not train, with
the defaults of `prefsmith.schemas.losses`. `--eta`, `--tau-good` and `--madpo-tau` override one
value on top.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError

from prefsmith.schemas.config_base import describe_errors, parse_config, read_yaml
from prefsmith.schemas.errors import ConfigError
from prefsmith.schemas.losses import MADPOParams, UniDPOParams
from prefsmith.schemas.pipeline_config import PipelineConfig
from prefsmith.schemas.train_configs import TrainConfig

P = TypeVar("P", UniDPOParams, MADPOParams)

# Top-level keys only a pipeline config has: such a file without `train` trains nothing.
PIPELINE_ONLY_KEYS = frozenset(PipelineConfig.model_fields) - frozenset(TrainConfig.model_fields)


def _shown(model: type[UniDPOParams | MADPOParams], field: str) -> str:
    """How a preview option's default reads in --help: the config's term, else the model's."""
    loss = model.__name__.removesuffix("Params").lower()
    return f"-c's {loss} term, else {model.model_fields[field].default:.5g}"


def inspect(
    pairs: Annotated[
        Path, typer.Argument(metavar="PAIRS", help="pairs table (file or shard folder)")
    ],
    against: Annotated[
        Path | None,
        typer.Option(
            "--against",
            metavar="OLDER_PAIRS",
            help="older pairs table: overlays and a KS statistic per distribution",
        ),
    ] = None,
    scores: Annotated[
        Path | None,
        typer.Option(
            "--scores", help="scores table: token lengths and per-objective distributions"
        ),
    ] = None,
    against_scores: Annotated[
        Path | None,
        typer.Option("--against-scores", help="scores table of OLDER_PAIRS (token lengths)"),
    ] = None,
    responses: Annotated[
        Path | None,
        typer.Option(
            "--responses",
            help="responses table (finish reasons) [default: the one the pairs manifest names]",
        ),
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html", help="HTML report path [default: <PAIRS>.inspect.html beside PAIRS]"
        ),
    ] = None,
    no_html: Annotated[bool, typer.Option("--no-html", help="print the tables only")] = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="also write the statistics as JSON")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="pipeline or train YAML: preview the weights with its loss terms' parameters",
        ),
    ] = None,
    eta: Annotated[
        float | None,
        typer.Option(
            "--eta",
            help="Uni-DPO η of w_qual = σ(η·margin)",
            show_default=_shown(UniDPOParams, "eta"),
        ),
    ] = None,
    tau_good: Annotated[
        float | None,
        typer.Option(
            "--tau-good",
            help="Uni-DPO c-NLL threshold τ_good on the normalized chosen score",
            show_default=_shown(UniDPOParams, "tau_good"),
        ),
    ] = None,
    madpo_tau: Annotated[
        float | None,
        typer.Option("--madpo-tau", help="MADPO τ", show_default=_shown(MADPOParams, "tau")),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="exit with code 1 when there are warnings")
    ] = False,
) -> None:
    """Inspect how pair scores, margins and weights are distributed before training on them;
    given a multi-round build folder, each round's distributions side by side."""
    from rich.console import Console

    from prefsmith.inspection.inspect import inspect_pairs, write_text
    from prefsmith.inspection.report import render_terminal
    from prefsmith.inspection.rounds_view import is_rounds_build

    if is_rounds_build(pairs):
        inspect_rounds_build(pairs, html=None if no_html else html, json_out=json_out)
        return

    unidpo, madpo = preview_params(config, eta=eta, tau_good=tau_good, madpo_tau=madpo_tau)
    out_html = None if no_html else (html or default_html_path(pairs))
    result = inspect_pairs(
        pairs,
        against=against,
        scores=scores,
        against_scores=against_scores,
        responses=responses,
        out_html=out_html,
        unidpo=unidpo,
        madpo=madpo,
    )
    console = Console()
    render_terminal(result.stats, warnings=result.warnings, console=console)
    if json_out is not None:
        write_text(json.dumps(result.stats, indent=2, ensure_ascii=False), json_out)
        console.print(f"[green]wrote[/] {json_out}")
    if result.html_path is not None:
        console.print(f"[green]wrote[/] {result.html_path}")
    if strict and result.warnings:
        raise typer.Exit(code=1)


def inspect_rounds_build(build: Path, *, html: Path | None, json_out: Path | None) -> None:
    """`prefsmith inspect BUILD` for a multi-round build (prefsmith.inspection.rounds_view)."""
    from rich.console import Console

    from prefsmith.flows.cli_run import rounds_table
    from prefsmith.inspection.inspect import write_text
    from prefsmith.inspection.rounds_view import inspect_rounds, terminal_tables

    result = inspect_rounds(build, out_html=html or Path(build) / "rounds.inspect.html")
    console = Console()
    for table in terminal_tables(result.stats):
        console.print(table)
    if (Path(build) / "rounds.json").is_file():
        console.print(rounds_table(Path(build) / "rounds.json"))
    if json_out is not None:
        write_text(json.dumps(result.stats, indent=2, ensure_ascii=False), json_out)
        console.print(f"[green]wrote[/] {json_out}")
    console.print(f"[green]wrote[/] {result.html_path}")


def default_html_path(pairs: Path) -> Path:
    """`<name>.inspect.html` beside the pairs file (or inside a shard folder)."""
    pairs = Path(pairs)
    if pairs.is_dir():
        return pairs / "inspect.html"
    return pairs.parent / f"{pairs.name.removesuffix('.parquet')}.inspect.html"


def train_config(path: Path) -> TrainConfig | None:
    """The train config in a pipeline YAML (its `train` section) or a train YAML (the whole file,
    or its `train` section); None for a pipeline config that trains nothing."""
    data = read_yaml(path)
    if "train" in data:
        section = data["train"]
        return None if section is None else parse_config(TrainConfig, section, section="train")
    if data.keys() & PIPELINE_ONLY_KEYS:
        return None
    return parse_config(TrainConfig, data)


def preview_params(
    config: Path | None,
    *,
    eta: float | None = None,
    tau_good: float | None = None,
    madpo_tau: float | None = None,
) -> tuple[UniDPOParams, MADPOParams]:
    """The Uni-DPO and MADPO parameters inspect previews: the config's terms (defaults for a loss
    it does not have), then the options that were given, validated like a config."""
    train = train_config(config) if config is not None else None
    unidpo = train.loss_params("unidpo") if train is not None else None
    madpo = train.loss_params("madpo") if train is not None else None
    return (
        _override(unidpo or UniDPOParams(), loss="unidpo", eta=eta, tau_good=tau_good),
        _override(madpo or MADPOParams(), loss="madpo", tau=madpo_tau),
    )


def _override(params: P, *, loss: str, **values: float | None) -> P:
    """`params` with the given (not None) `values`, range-checked by its model."""
    given = {key: value for key, value in values.items() if value is not None}
    if not given:
        return params
    try:
        return type(params).model_validate(params.model_dump() | given)
    except ValidationError as error:
        raise ConfigError(f"invalid option: {describe_errors(error, prefix=loss)}") from None
