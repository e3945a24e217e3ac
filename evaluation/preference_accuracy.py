"""Held-out preference accuracy: does the tuned policy's implicit reward rank held-out pairs
the way the scorer does?

DPO's implicit reward of a completion is β·(log π(y|x) − log π_ref(y|x)) (Rafailov et al. 2023,
"Direct Preference Optimization", arXiv:2305.18290, eq. 5). β only scales it, so the β-free
per-pair margin is

    m = (log π(y_w|x) − log π_ref(y_w|x)) − (log π(y_l|x) − log π_ref(y_l|x))

with summed completion log-probs. Accuracy is the fraction of pairs with m > 0 (a tie, m = 0,
counts as wrong, as in TRL's `rewards/accuracies`); the mean margin is in nats per pair.
Both log-prob passes are `prefsmith.training.reference.reference_pass` (the same rendering and truncation
as training): once with the reference model, once with the tuned checkpoint as "reference".
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from prefsmith.schemas.eval_configs import PolicyReferenceConfig
from prefsmith.schemas.io import read_frame, write_table
from prefsmith.schemas.manifest import (
    Inputs,
    Manifest,
    StageResult,
    input_path,
    input_ref,
    manifest_path,
)
from prefsmith.schemas.tables import PAIRS, PAIRS_WITH_REFERENCE

logger = logging.getLogger(__name__)

OUTPUT_NAME = "heldout_margins.parquet"
MARGINS = pa.schema(
    [
        ("pair_id", pa.string()),
        ("prompt_id", pa.string()),
        ("policy_logp_chosen", pa.float64()),
        ("policy_logp_rejected", pa.float64()),
        ("ref_logp_chosen", pa.float64()),
        ("ref_logp_rejected", pa.float64()),
        ("margin", pa.float64()),
    ]
)


def implicit_margins(policy_chosen, policy_rejected, ref_chosen, ref_rejected) -> np.ndarray:
    """β-free implicit-reward margin per pair `(P,)` from four `(P,)` summed log-prob arrays."""
    as64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    return (as64(policy_chosen) - as64(ref_chosen)) - (
        as64(policy_rejected) - as64(ref_rejected)
    )  # (P,)


def preference_accuracy(margins) -> dict[str, float | int | None]:
    """Accuracy (fraction of margins > 0), mean margin, and counts of a `(P,)` margin array."""
    m = np.asarray(margins, dtype=np.float64)  # (P,)
    if m.size == 0:
        return {"n_pairs": 0, "accuracy": None, "mean_margin": None, "ties": 0}
    return {
        "n_pairs": int(m.size),
        "accuracy": float((m > 0).mean()),
        "mean_margin": float(m.mean()),
        "ties": int((m == 0).sum()),
    }


def join_passes(policy: pl.DataFrame, reference: pl.DataFrame) -> pl.DataFrame:
    """Pairs present in both passes, on `pair_id`, with their margin (MARGINS columns)."""
    mine = policy.select(
        "pair_id",
        "prompt_id",
        pl.col("ref_logp_chosen").alias("policy_logp_chosen"),
        pl.col("ref_logp_rejected").alias("policy_logp_rejected"),
    )
    joined = mine.join(
        reference.select("pair_id", "ref_logp_chosen", "ref_logp_rejected"),
        on="pair_id",
        how="inner",
    )
    margin = implicit_margins(
        joined["policy_logp_chosen"],
        joined["policy_logp_rejected"],
        joined["ref_logp_chosen"],
        joined["ref_logp_rejected"],
    )
    return joined.with_columns(pl.Series("margin", margin, dtype=pl.Float64)).sort("pair_id")


def heldout_accuracy(
    inputs: Inputs, *, config: PolicyReferenceConfig, out_dir: str | Path
) -> StageResult:
    """Log-probs of held-out `inputs["pairs"]` under the reference and under the tuned policy (one
    model at a time, each through the reference pass), then margins, accuracy and mean margin.

    Writes `heldout_margins.parquet` and its manifest (summary in `extra.summary`); pairs that
    either pass quarantined are counted as dropped under that pass's reasons.
    """
    from prefsmith.training.reference import reference_pass

    start = time.perf_counter()
    pairs, out_dir = input_path(inputs, "pairs"), Path(out_dir)
    reference, policy = config.reference, config.policy
    n_in = read_frame(pairs, PAIRS).height
    passes: dict[str, pl.DataFrame] = {}
    quarantined: dict[str, int] = {}
    for name, model in (
        ("reference", reference),
        ("policy", reference.model_copy(update={"model": policy, "revision": None})),
    ):
        if n_in == 0:
            passes[name] = pl.from_arrow(PAIRS_WITH_REFERENCE.empty_table())
            continue
        result = reference_pass({"pairs": pairs}, config=model, out_dir=out_dir / name)
        passes[name] = read_frame(result.output, PAIRS_WITH_REFERENCE)
        for reason, count in Manifest.read(result.manifest).dropped.items():
            quarantined[f"{name}:{reason}"] = count
    margins = join_passes(passes["policy"], passes["reference"])
    output = write_table(margins, out_dir / OUTPUT_NAME, MARGINS)
    summary = preference_accuracy(margins["margin"].to_numpy())
    dropped = {"not_scored_by_both": n_in - margins.height} if n_in > margins.height else {}
    manifest = Manifest(
        stage="heldout_accuracy",
        unit="pair",
        config=config.model_dump(mode="json"),
        inputs=[input_ref(pairs)],
        outputs={"margins": str(output)},
        rows_in=n_in,
        rows_out=margins.height,
        dropped=dropped,
        extra={"summary": summary, "quarantined_by_pass": quarantined},
        wall_time_s=time.perf_counter() - start,
    )
    logger.info("held-out pairs: %d, accuracy %s", margins.height, summary["accuracy"])
    return StageResult(output, None, manifest.write(manifest_path(output)))
