"""The combine stage: several scorers' scores tables → one scores table the pairs stage ranks by,
by the declared combination (prefsmith.schemas.combine_config; its table of methods).

Inputs are named `scores:<scorer name>`. Each response's raw score from every scorer is kept in
the combined row's `objectives` as `scorer/<name>` (and `gate/pass` for a gate), so `inspect`
shows each scorer's distribution and the pairs can be traced back to who ranked them. Normalizing
statistics are over each scorer's own rows (z-score: mean and std; rank: the mean rank of ties,
scaled to [0, 1]).

Rows in = responses any scorer scored; rows out = those every scorer the combination uses
scored once. Quarantined (reasons): `missing_score` (a scorer the combination uses has no score
for it: quarantined or not scored), `duplicate_score` (a scorer scored the response_id twice;
the first row is kept). Output: `scores.combined.parquet` (scorer `combined-<method>`), its
quarantine and manifest (extra: the combination, each scorer's `scorer` value, the normalizing
statistics).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import rankdata

from prefsmith.schemas.combine_config import CombineConfig
from prefsmith.schemas.errors import ConfigError
from prefsmith.schemas.io import read_frame, write_table
from prefsmith.schemas.manifest import (
    Inputs,
    Manifest,
    StageResult,
    count_reasons,
    input_ref,
    manifest_path,
)
from prefsmith.schemas.quarantine import Rejected, write_quarantine
from prefsmith.schemas.tables import SCORES

STAGE = "combine"
PREFIX = "scores:"


def scorer_tables(inputs: Inputs) -> dict[str, Path]:
    """Scorer name → its scores table, from the `scores:<name>` inputs."""
    tables = {k.removeprefix(PREFIX): Path(v) for k, v in inputs.items() if k.startswith(PREFIX)}
    if not tables:
        raise ConfigError("combine reads scores:<scorer name> tables; none was given")
    return tables


def load_scores(tables: dict[str, Path]) -> tuple[dict[str, pl.DataFrame], list[Rejected]]:
    """Each scorer's rows, one per response_id (later copies are rejected)."""
    frames, rejected = {}, []
    for name, path in tables.items():
        frame = read_frame(path, SCORES).with_row_index("_row")
        first = frame.unique("response_id", keep="first", maintain_order=True)
        extra = frame.join(first.select("_row"), on="_row", how="anti")
        rejected += [
            Rejected(rid, "duplicate_score", f"scorer {name} scored it more than once", "")
            for rid in extra["response_id"]
        ]
        frames[name] = first.drop("_row")
    return frames, rejected


def wide_table(frames: dict[str, pl.DataFrame], used: list[str]):
    """One row per response with every used scorer's score (`s:<name>`); rejected rows."""
    ids = pl.concat([f.select("response_id", "prompt_id", "n_tokens") for f in frames.values()])
    wide = ids.unique("response_id", keep="first", maintain_order=True).sort("response_id")
    for name, frame in frames.items():
        wide = wide.join(
            frame.select("response_id", pl.col("score").alias(f"s:{name}")),
            on="response_id",
            how="left",
        )
    missing = pl.any_horizontal([pl.col(f"s:{n}").is_null() for n in used])
    rejected = [
        Rejected(row["response_id"], "missing_score", _missing(row, used), "")
        for row in wide.filter(missing).iter_rows(named=True)
    ]
    return wide.filter(~missing), rejected


def _missing(row: dict[str, Any], used: list[str]) -> str:
    return "no score from " + ", ".join(n for n in used if row[f"s:{n}"] is None)


def normalized(values: np.ndarray, method: str) -> tuple[np.ndarray, dict[str, float]]:
    """One scorer's scores on the combination's scale, and the statistics used."""
    if method == "rank":
        ranks = (rankdata(values, method="average") - 1) / max(values.size - 1, 1)
        return ranks, {"n": int(values.size)}
    if method == "zscore":
        mean, std = float(values.mean()), float(values.std())
        return (values - mean) / (std if std > 0 else 1.0), {"mean": mean, "std": std}
    return values, {}


def combined_scores(wide: pl.DataFrame, config: CombineConfig, names: list[str]):
    """The combined score of every row of `wide`, and the facts the manifest records."""
    raw = {name: wide[f"s:{name}"].to_numpy().astype(np.float64) for name in names}
    if config.method == "single":
        return raw[config.scorer], {}
    if config.method == "lexicographic":
        keys = np.stack([raw[name] for name in config.order[::-1]])  # lexsort: last key first
        order = np.lexsort(keys)
        sorted_keys = keys[:, order].T
        new = np.r_[True, np.any(sorted_keys[1:] != sorted_keys[:-1], axis=1)]
        ranks = np.empty(order.size)
        ranks[order] = np.cumsum(new) - 1  # ties share a rank
        return ranks / max(ranks.max(), 1.0), {}
    scaled, stats = {}, {}
    for name in config.used(names):
        scaled[name], stats[name] = normalized(raw[name], config.normalize)
    if config.method == "weighted_sum":
        total = sum(config.weights.get(name, 1.0) * scaled[name] for name in scaled)
        return total, {"normalization": stats}
    ranker = scaled[config.ranker(names)]
    passed = raw[config.gate] >= config.threshold
    penalty = (float(ranker.max() - ranker.min()) + 1.0) if ranker.size else 1.0
    facts = {"normalization": stats, "gate_passed": int(passed.sum()), "gate_penalty": penalty}
    return np.where(passed, ranker, ranker - penalty), facts


def combined_rows(wide: pl.DataFrame, score: np.ndarray, config: CombineConfig, names):
    """The output rows: combined score, each scorer's raw score (and the gate) as objectives."""
    objectives = [
        [
            {"name": f"scorer/{name}", "value": row[f"s:{name}"]}
            for name in names
            if row[f"s:{name}"] is not None  # an unused scorer may lack this response
        ]
        for row in wide.iter_rows(named=True)
    ]
    if config.method == "gate":
        for objs, row in zip(objectives, wide.iter_rows(named=True), strict=True):
            passed = row[f"s:{config.gate}"] >= config.threshold
            objs.append({"name": "gate/pass", "value": float(passed)})
    return pl.DataFrame(
        {
            "response_id": wide["response_id"],
            "prompt_id": wide["prompt_id"],
            "scorer": [f"combined-{config.method}"] * wide.height,
            "score": score,
            "objectives": objectives,
            "n_tokens": wide["n_tokens"],
        }
    )


def combine_scores(inputs: Inputs, *, config: CombineConfig, out_dir: Path) -> StageResult:
    """Run the combine stage (module docstring) into `out_dir`."""
    start = time.perf_counter()
    tables = scorer_tables(inputs)
    names = list(tables)
    unknown = config.unknown_names(names)
    if unknown:
        raise ConfigError(f"combine: unknown scorer {', '.join(unknown)}; inputs: {names}")
    frames, rejected = load_scores(tables)
    wide, missing = wide_table(frames, [n for n in config.used(names) if n in names])
    rows_in = wide.height + len(missing)
    score, facts = combined_scores(wide, config, names)
    out_dir = Path(out_dir)
    output = write_table(
        combined_rows(wide, score, config, names), out_dir / "scores.combined.parquet", SCORES
    )
    reasons = rejected + missing
    quarantine = write_quarantine(
        reasons, out_dir / "scores.combined.quarantine.parquet", stage=STAGE
    )
    scorers = {name: str(frames[name]["scorer"].first()) for name in names}
    manifest = Manifest(
        stage=STAGE,
        unit="response",
        config=config.model_dump(mode="json"),
        inputs=[input_ref(path) for path in tables.values()],
        outputs={"scores": str(output), "quarantine": str(quarantine)},
        rows_in=rows_in,
        rows_out=wide.height,
        dropped=count_reasons([r.reason for r in missing]),
        rows_written={"scores": wide.height, "quarantine": len(reasons)},
        extra={
            "combination": config.model_dump(mode="json"),
            "scorers": scorers,
            "duplicate_copies": len(rejected),
            **facts,
        },
        wall_time_s=time.perf_counter() - start,
    )
    return StageResult(output, quarantine, manifest.write(manifest_path(output)))
