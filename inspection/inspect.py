"""`prefsmith inspect`: how a pairs table's scores, margins and weights are distributed.

Run before training: a weight that is the same for every pair (raw ArmoRM margins with η = 0.7),
a c-NLL threshold that never fires, a scorer that mostly rewards length, or a table full of
near-ties each waste the GPU hours of a training run, and all of them show in the data alone.

Inputs: a PAIRS table (file or shard folder); its manifest `pairs.manifest.json` when present
(drop reasons, and the score transform through prefsmith.schemas.manifest.read_score_transform,
which assumes the identity, and says so, when none is declared);
optionally the SCORES table (token lengths and per-objective values, joined on response ids)
and an older PAIRS table to compare against (two-sample KS per distribution).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from prefsmith.inspection import stats as st
from prefsmith.inspection.figures import write_plotly_js
from prefsmith.inspection.pair_browser import browser_html, browser_rows
from prefsmith.inspection.quality import quality_signals, quality_warnings
from prefsmith.inspection.report import render_html
from prefsmith.inspection.scorer_agreement import scorer_agreement
from prefsmith.inspection.warnings import warnings as find_warnings
from prefsmith.schemas.errors import InputError
from prefsmith.schemas.io import check_schema, shard_files, write_text
from prefsmith.schemas.losses import MADPOParams, UniDPOParams
from prefsmith.schemas.manifest import Manifest, manifest_path, read_score_transform
from prefsmith.schemas.tables import PAIRS, SCORES

logger = logging.getLogger(__name__)

SCORE_COLUMNS = ("response_id", "prompt_id", "scorer", "score", "n_tokens", "objectives")
PAIR_COLUMNS = tuple(name for name in PAIRS.names if name != "messages")  # texts: word counts


@dataclass(frozen=True)
class InspectResult:
    """The statistics dict (prefsmith.inspection.stats), its warnings and the HTML report's path."""

    stats: dict
    warnings: list[str]
    html_path: Path | None


@dataclass(frozen=True)
class _Loaded:
    columns: st.PairColumns
    manifest: dict | None
    method: str
    scorers: tuple[str, ...]  # pairs.scorer values: which scorer made the table's scores
    frame: pl.DataFrame  # the pairs' columns but messages (texts, ids) for the quality signals
    responses: Path | None  # the responses table the pairs manifest names, when it exists
    scores: pl.DataFrame | None  # the scores rows of the pairs' scorers, when --scores is given


def _scan(path: Path, *, schema, columns: tuple[str, ...], what: str) -> pl.DataFrame:
    """Read `columns` of a Parquet file or shard folder after checking every file's schema."""
    files = shard_files(path)
    if not files:
        raise InputError(
            f"{what}: no Parquet file at {path}; pass a {what} table written by prefsmith"
        )
    needed = pa.schema([f for f in schema if f.name in columns])
    for file in files:
        try:
            check_schema(pq.read_schema(file), needed, where=f"{what} {file}")
        except OSError as error:
            raise InputError(f"{what}: cannot read {file}: {error}") from error
    return pl.scan_parquet(files).select(columns).collect()


def _manifest(pairs: Path) -> Manifest | None:
    """The pairs manifest beside a pairs file, for its counts (None when absent: inspect runs)."""
    path = manifest_path(pairs)
    return Manifest.read(path) if path.is_file() else None


def _load(pairs: Path, *, scores: Path | None) -> _Loaded:
    frame = _scan(pairs, schema=PAIRS, columns=PAIR_COLUMNS, what="pairs")
    score_frame = None
    if scores is not None:
        score_frame = _scan(scores, schema=SCORES, columns=SCORE_COLUMNS, what="scores")
    transform = read_score_transform(pairs)  # first: an unreadable manifest stops here
    manifest = _manifest(pairs)
    scale_shift = (transform.scale, transform.shift)
    columns = st.pair_columns(frame, scores=score_frame, transform=scale_shift)
    counts = manifest.model_dump(include={"rows_in", "rows_out", "dropped"}) if manifest else None
    scorers = tuple(frame["scorer"].drop_nulls().unique().sort())
    if score_frame is not None:
        score_frame = score_frame.filter(pl.col("scorer").is_in(list(scorers)))
    return _Loaded(
        columns, counts, transform.label(), scorers, frame, _responses_of(manifest), score_frame
    )


def _responses_of(manifest: Manifest | None) -> Path | None:
    """The responses table among the pairs stage's inputs (for finish reasons), if still there."""
    for ref in manifest.inputs if manifest else []:
        path = Path(ref.path)
        if path.name.removesuffix(".parquet") == "responses" and path.exists():
            return path
    return None


def _browser(pairs: Path, *, scale: float, unidpo, madpo) -> str:
    rows, total = browser_rows(pairs, scale=scale, unidpo=unidpo, madpo=madpo)
    return browser_html(rows, total=total)


def _with_ids(arrays: dict, columns) -> dict:
    """The chart arrays plus the pair ids that name scatter points (not a distribution: drift
    and statistics never see them)."""
    return arrays if columns.pair_id is None else {**arrays, "pair_id": columns.pair_id}


def inspect_pairs(
    pairs: Path,
    *,
    against: Path | None = None,
    scores: Path | None = None,
    against_scores: Path | None = None,
    out_html: Path | None = None,
    unidpo: UniDPOParams | None = None,
    madpo: MADPOParams | None = None,
    responses: Path | None = None,
) -> InspectResult:
    """Statistics, warnings and (if `out_html`) the HTML report of the pairs table `pairs`.

    `against` is an older pairs table: each distribution is compared with a two-sample KS
    statistic (each table under its own manifest's transform; lengths only when both tables
    measure them in the same unit, so pass `against_scores` when `scores` is given). `unidpo`
    and `madpo` are the loss parameters the weights are previewed with: the train config's
    terms (`TrainConfig.loss_params`); None: the defaults of `prefsmith.schemas.losses`.
    `responses` (default: the one the pairs manifest names) gives the truncation signal.
    """
    pairs, weights = Path(pairs), {"unidpo": unidpo, "madpo": madpo}
    current = _load(pairs, scores=scores)
    stats = st.statistics_from_columns(
        current.columns, manifest=current.manifest, method=current.method, **weights
    )
    arrays = st.distributions(current.columns, **weights)
    pair_ids = None if current.columns.pair_id is None else list(current.columns.pair_id)
    stats["scorer_agreement"] = scorer_agreement(current.columns.objectives, pair_ids)
    older_arrays = None
    if against is not None:
        older = _load(Path(against), scores=against_scores)
        older_arrays = st.distributions(older.columns, **weights)
        same_unit = older.columns.length_unit == current.columns.length_unit
        stats["drift"] = st.drift(arrays, older_arrays, same_length_unit=same_unit)
        stats["drift_scorers"] = st.scorer_comparison(current.scorers, older.scorers)
    stats["quality"] = quality_signals(
        current.frame,
        manifest=current.manifest,
        responses=responses or current.responses,
        scores=current.scores,
    )
    found = find_warnings(stats) + quality_warnings(stats)
    for text in found:
        logger.info("inspect warning: %s", text)
    html_path = None
    if out_html is not None:
        sources = {"pairs": str(pairs)} | ({"against": str(against)} if against else {})
        sources |= {"scores": str(scores)} if scores else {}
        page = render_html(
            stats,
            warnings=found,
            arrays=_with_ids(arrays, current.columns),
            objectives=current.columns.objectives,
            against=older_arrays,
            sources=sources,
            pair_browser=_browser(pairs, scale=current.columns.scale, **weights),
        )
        html_path = write_text(page, Path(out_html))
        write_plotly_js(html_path.parent)
    return InspectResult(stats=stats, warnings=found, html_path=html_path)
