"""The combine stage (prefsmith.curation.combine) on fixed scores of two scorers: each method's
combined scores against a hand computation, the pairs built from them against the hand choice of
chosen/rejected, missing and duplicate scores quarantined with counts that reconcile."""

from __future__ import annotations

import math

import polars as pl
import pytest

from prefsmith.curation.combine import combine_scores
from prefsmith.curation.pairs import build_pairs
from prefsmith.schemas.combine_config import CombineConfig
from prefsmith.schemas.data_configs import PairsConfig
from prefsmith.schemas.io import read_frame, write_table
from prefsmith.schemas.manifest import Manifest
from prefsmith.schemas.tables import PAIRS, PROMPTS, QUARANTINE, RESPONSES, SCORES

# prompt p0: 3 responses, p1: 2. `rule` is a verifiable-answer check (1 pass, 0 fail).
RM = {"p0-0": 0.9, "p0-1": 0.2, "p0-2": 0.5, "p1-0": -1.0, "p1-1": 1.0}
RULE = {"p0-0": 0.0, "p0-1": 1.0, "p0-2": 1.0, "p1-0": 1.0, "p1-1": 1.0}


def scores_table(path, scorer: str, values: dict[str, float]):
    rows = [
        {
            "response_id": rid,
            "prompt_id": rid.split("-")[0],
            "scorer": scorer,
            "score": value,
            "objectives": [],
            "n_tokens": 4,
        }
        for rid, value in values.items()
    ]
    return write_table(rows, path, SCORES)


def combine(tmp_path, config: dict, *, rm=RM, rule=RULE):
    inputs = {
        "scores:rm": scores_table(tmp_path / "rm.parquet", "rm@1", rm),
        "scores:rule": scores_table(tmp_path / "rule.parquet", "exact", rule),
    }
    result = combine_scores(inputs, config=CombineConfig(**config), out_dir=tmp_path / "out")
    frame = read_frame(result.output, SCORES)
    return dict(zip(frame["response_id"], frame["score"], strict=True)), result


def zscores(values: dict[str, float]) -> dict[str, float]:
    mean = sum(values.values()) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values.values()) / len(values))
    return {k: (v - mean) / std for k, v in values.items()}


def test_weighted_sum_of_zscores(tmp_path):
    got, result = combine(tmp_path, {"method": "weighted_sum", "weights": {"rm": 2.0, "rule": 0.5}})
    z_rm, z_rule = zscores(RM), zscores(RULE)
    assert got == pytest.approx({k: 2.0 * z_rm[k] + 0.5 * z_rule[k] for k in RM})
    extra = Manifest.read(result.manifest).extra
    assert extra["scorers"] == {"rm": "rm@1", "rule": "exact"}
    assert extra["normalization"]["rm"]["mean"] == pytest.approx(sum(RM.values()) / 5)


def test_weighted_sum_of_ranks(tmp_path):
    got, _ = combine(tmp_path, {"method": "weighted_sum", "normalize": "rank"})
    # rm ranks (ascending, 0..4 over 4): p1-0 0, p0-1 1, p0-2 2, p0-0 3, p1-1 4
    rm = {"p1-0": 0, "p0-1": 1 / 4, "p0-2": 2 / 4, "p0-0": 3 / 4, "p1-1": 1.0}
    # rule: one 0 (rank 0) and four tied 1s sharing the mean rank (1+2+3+4)/4 = 2.5 → 2.5/4
    rule = {k: (0.0 if v == 0 else 2.5 / 4) for k, v in RULE.items()}
    assert got == pytest.approx({k: rm[k] + rule[k] for k in RM})


def test_gate_puts_every_failing_response_below_every_passing_one(tmp_path):
    got, result = combine(tmp_path, {"method": "gate", "gate": "rule", "threshold": 0.5})
    z = zscores(RM)
    penalty = max(z.values()) - min(z.values()) + 1.0
    assert got == pytest.approx({k: z[k] - (penalty if RULE[k] < 0.5 else 0.0) for k in RM})
    assert min(got[k] for k in RM if RULE[k] == 1) > max(got[k] for k in RM if RULE[k] == 0)
    assert Manifest.read(result.manifest).extra["gate_passed"] == 4


def test_lexicographic_breaks_rule_ties_by_the_reward_model(tmp_path):
    got, _ = combine(tmp_path, {"method": "lexicographic", "order": ["rule", "rm"]})
    # sorted by (rule, rm): p0-0 (0, .9) < p1-0 (1, -1) < p0-1 (1, .2) < p0-2 (1, .5) < p1-1 (1, 1)
    assert got == pytest.approx({"p0-0": 0, "p1-0": 0.25, "p0-1": 0.5, "p0-2": 0.75, "p1-1": 1})


def test_single_keeps_one_scorers_raw_scores(tmp_path):
    got, _ = combine(tmp_path, {"method": "single", "scorer": "rm"})
    assert got == pytest.approx(RM)


def pairs_table(tmp_path, scores):
    """The pairs stage (best vs worst) on `scores` of the fixed responses; its table's path."""
    ids = list(RM)
    responses = pl.DataFrame(
        {
            "prompt_id": [i.split("-")[0] for i in ids],
            "response_id": ids,
            "sample_idx": pl.Series([int(i[-1]) for i in ids], dtype=pl.Int32),
            "response": [f"answer {i}" for i in ids],
            "n_tokens": pl.Series([4] * len(ids), dtype=pl.Int32),
            "finish_reason": "stop",
            "generator": "g",
            "gen_config_hash": "h",
        }
    )
    prompts = [
        {
            "prompt_id": p,
            "messages": [{"role": "user", "content": p}],
            "source": "t",
            "metadata": "{}",
        }
        for p in ("p0", "p1")
    ]
    inputs = {
        "scores": scores,
        "responses": write_table(responses, tmp_path / "responses.parquet", RESPONSES),
        "prompts": write_table(prompts, tmp_path / "prompts.parquet", PROMPTS),
    }
    return build_pairs(inputs, config=PairsConfig(), out_dir=tmp_path / "pairs").output


def pairs_of(tmp_path, scores) -> dict[str, tuple[str, str]]:
    """Prompt → (chosen, rejected) response ids of the pairs built from `scores`."""
    frame = read_frame(pairs_table(tmp_path, scores), PAIRS)
    return {
        row["prompt_id"]: (row["chosen_response_id"], row["rejected_response_id"])
        for row in frame.iter_rows(named=True)
    }


def test_pairs_follow_the_declared_combination(tmp_path):
    _, gate = combine(tmp_path / "g", {"method": "gate", "gate": "rule"})
    # p0: the RM's favourite p0-0 fails the rule, so the best passing one (p0-2) is chosen
    # and the failing one is rejected; p1: both pass, the RM decides.
    assert pairs_of(tmp_path / "g", gate.output) == {"p0": ("p0-2", "p0-0"), "p1": ("p1-1", "p1-0")}
    _, single = combine(tmp_path / "s", {"method": "single", "scorer": "rm"})
    assert pairs_of(tmp_path / "s", single.output)["p0"] == ("p0-0", "p0-1")


def test_missing_and_duplicate_scores_are_quarantined_and_counted(tmp_path):
    rm = {k: v for k, v in RM.items() if k != "p1-0"}
    inputs = {
        "scores:rm": scores_table(tmp_path / "rm.parquet", "rm", rm),
        "scores:rule": scores_table(tmp_path / "rule.parquet", "exact", RULE),
    }
    doubled = pl.concat([read_frame(inputs["scores:rule"], SCORES)] * 2)
    write_table(doubled, tmp_path / "rule.parquet", SCORES)
    config = CombineConfig(method="weighted_sum")
    result = combine_scores(inputs, config=config, out_dir=tmp_path / "out")
    manifest = Manifest.read(result.manifest)
    assert (manifest.rows_in, manifest.rows_out) == (5, 4)
    assert manifest.dropped == {"missing_score": 1}
    assert manifest.rows_in == manifest.rows_out + sum(manifest.dropped.values())
    quarantine = read_frame(result.quarantine, QUARANTINE)
    reasons = sorted(zip(quarantine["reason"], quarantine["row_ref"], strict=True))
    assert reasons[0] == ("duplicate_score", "p0-0") and len(reasons) == 6
    assert ("missing_score", "p1-0") in reasons
    assert manifest.extra["duplicate_copies"] == 5


def test_inspect_shows_where_the_scorers_agree_and_disagree(tmp_path):
    from scipy.stats import spearmanr

    from prefsmith.inspection.inspect import inspect_pairs

    _, gate = combine(tmp_path, {"method": "gate", "gate": "rule"})
    stats = inspect_pairs(pairs_table(tmp_path, gate.output), scores=gate.output).stats
    (entry,) = stats["scorer_agreement"]
    # pairs p0 (p0-2 over p0-0) and p1 (p1-1 over p1-0): the RM prefers p0-0 (0.9 > 0.5), the
    # rule prefers p0-2 (1 > 0): opposite; on p1 the RM prefers p1-1 and the rule ties.
    assert (entry["a"], entry["b"], entry["n_pairs"]) == ("rm", "rule", 2)
    assert (entry["same"], entry["opposite"]) == (0.0, 0.5)
    rho = spearmanr([0.5, 1.0, 0.9, -1.0], [1.0, 1.0, 0.0, 1.0]).statistic
    assert entry["spearman"] == pytest.approx(rho)
    (worst,) = entry["disagreements"]
    assert worst["margin_a"] == pytest.approx(-0.4) and worst["margin_b"] == 1.0
    assert stats["objectives"]["scorer/rm"]["agreement"] == 0.5  # RM agrees with 1 of 2 pairs
