"""The evaluation report names its judge, warns when the judge built the training pairs, and
puts every scorer's win rate side by side (prefsmith.evaluation.judges), each against a hand
count of the per-prompt outcomes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))  # the shared comparison: eval_report_case
from eval_report_case import write_side

from prefsmith.evaluation.compare import compare_policies
from prefsmith.evaluation.judges import TRAINING_JUDGE_WARNING
from prefsmith.schemas.eval_configs import CompareConfig
from prefsmith.schemas.io import read_frame, write_table
from prefsmith.schemas.tables import SCORES


def negated(scores, path):
    """A second scorer that disagrees everywhere: the first one's scores negated."""
    frame = read_frame(scores, SCORES)
    return write_table(frame.with_columns(score=-frame["score"], scorer=None), path, SCORES)


def hand_rate(tuned, base) -> float:
    means = []
    for path in (tuned, base):
        frame = read_frame(path, SCORES)
        per = {}
        for pid, score in zip(frame["prompt_id"], frame["score"], strict=True):
            per.setdefault(pid, []).append(score)
        means.append({pid: float(np.mean(v)) for pid, v in per.items()})
    won = [1.0 if means[0][p] > means[1][p] else 0.5 if means[0][p] == means[1][p] else 0.0
           for p in means[0]]  # fmt: skip
    return sum(won) / len(won)


def report(tmp_path, *, judge_is_training: bool):
    rng = np.random.default_rng(3)
    tuned = write_side(tmp_path / "tuned", rng=rng, n_prompts=30, shift=0.8, mean_len=10)
    base = write_side(tmp_path / "base", rng=rng, n_prompts=30, shift=0.0, mean_len=14)
    other = {
        "tuned": negated(tuned[0], tmp_path / "tuned_other.parquet"),
        "base": negated(base[0], tmp_path / "base_other.parquet"),
    }
    inputs = {
        "tuned_scores": tuned[0],
        "tuned_responses": tuned[1],
        "base_scores": base[0],
        "base_responses": base[1],
        "tuned_scores:rule": tuned[0],
        "base_scores:rule": base[0],
        "tuned_scores:contrarian": other["tuned"],
        "base_scores:contrarian": other["base"],
    }
    config = CompareConfig(
        n_boot=200,
        judge="rule",
        judge_is_training_scorer=judge_is_training,
        training_scorers=["rule"] if judge_is_training else ["contrarian"],
    )
    result = compare_policies(inputs, config=config, out_dir=tmp_path / "out")
    return json.loads(result.output.read_text()), result, (tuned, base, other)


def test_report_names_the_judge_and_every_scorers_win_rate(tmp_path):
    data, result, (tuned, base, other) = report(tmp_path, judge_is_training=False)
    assert data["judge"] == {"name": "rule", "training_scorer": False, "warning": None}
    rows = {row["scorer"]: row for row in data["by_scorer"]}
    assert rows["rule"]["rate"] == data["win_rate"]["rate"] == hand_rate(tuned[0], base[0])
    assert rows["contrarian"]["rate"] == hand_rate(other["tuned"], other["base"])
    assert rows["rule"]["rate"] + rows["contrarian"]["rate"] == 1.0  # negated: mirror image
    assert (rows["rule"]["training_scorer"], rows["contrarian"]["training_scorer"]) == (False, True)
    md = (result.output.parent / "eval_report.md").read_text()
    assert "Judged by **rule** (not a training scorer)" in md and "Warning" not in md
    assert "| contrarian |" in md


def test_report_warns_when_the_judge_built_the_pairs(tmp_path):
    data, result, _ = report(tmp_path, judge_is_training=True)
    assert data["judge"]["training_scorer"] and data["judge"]["warning"] == TRAINING_JUDGE_WARNING
    md = (result.output.parent / "eval_report.md").read_text()
    assert f"> Warning: {TRAINING_JUDGE_WARNING}" in md
    html = (result.output.parent / "eval_report.html").read_text()
    assert "judge-warning" in html and "a training scorer" in html


def test_win_rates_by_scorer_do_not_depend_on_row_order(tmp_path):
    """The bootstrap draws prompts by position: the per-scorer table must sort them first."""
    from prefsmith.evaluation.judges import by_scorer

    data, _, (tuned, base, _) = report(tmp_path, judge_is_training=False)
    shuffled = {}
    for side, path in (("tuned", tuned[0]), ("base", base[0])):
        frame = read_frame(path, SCORES).sample(fraction=1.0, shuffle=True, seed=7)
        shuffled[side] = write_table(frame, tmp_path / f"{side}_shuffled.parquet", SCORES)
    config = CompareConfig(n_boot=200)
    (row,) = by_scorer({"rule": shuffled}, config=config)
    want = next(r for r in data["by_scorer"] if r["scorer"] == "rule")
    assert {k: row[k] for k in ("rate", "low", "high", "n")} == {
        k: want[k] for k in ("rate", "low", "high", "n")
    }
