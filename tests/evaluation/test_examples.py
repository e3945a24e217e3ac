"""The evaluation report's side-by-side examples: which prompts are picked, with which texts and
rewards, against a hand-made comparison; and that the compare stage carries them into the JSON,
markdown and HTML reports."""

from __future__ import annotations

import json

import polars as pl

from prefsmith.evaluation.compare import compare_policies
from prefsmith.evaluation.examples import example_table, pick_examples
from prefsmith.schemas.eval_configs import CompareConfig
from prefsmith.schemas.ids import prompt_id, response_id
from prefsmith.schemas.io import write_table
from prefsmith.schemas.tables import PROMPTS, RESPONSES, SCORES

# tuned − base per prompt (mean over the two samples): p0 +3, p1 −2, p2 +1, p3 0, p4 −4, p5 +2
TUNED = {0: (4, 4), 1: (0, 0), 2: (2, 2), 3: (1, 1), 4: (0, 0), 5: (3, 3)}
BASE = {0: (1, 1), 1: (2, 2), 2: (1, 1), 3: (1, 1), 4: (3, 5), 5: (1, 1)}


def write_prompts(path, texts):
    messages = [[{"role": "user", "content": t}] for t in texts]
    rows = [
        {"prompt_id": prompt_id(m), "messages": m, "source": "t", "metadata": "{}"}
        for m in messages
    ]
    return write_table(rows, path, PROMPTS), [r["prompt_id"] for r in rows]


def _side(root, ids, rewards, name):
    rows = [
        {
            "prompt_id": pid, "response_id": response_id(pid, k), "sample_idx": k,
            "response": f"{name} answer {k} to {i}", "n_tokens": 4, "finish_reason": "stop",
            "generator": name, "gen_config_hash": "x",
        }
        for i, pid in enumerate(ids)
        for k in range(2)
    ]  # fmt: skip
    responses = write_table(rows, root / f"{name}_responses.parquet", RESPONSES)
    scores = [
        {
            "response_id": response_id(pid, k),
            "prompt_id": pid,
            "scorer": "rule",
            "score": float(rewards[i][k]),
            "objectives": [],
            "n_tokens": 4,
        }
        for i, pid in enumerate(ids)
        for k in range(2)
    ]
    return write_table(scores, root / f"{name}_scores.parquet", SCORES), responses


def _inputs(tmp_path):
    prompts, ids = write_prompts(tmp_path / "prompts.parquet", [f"question {i}" for i in range(6)])
    tuned, base = _side(tmp_path, ids, TUNED, "tuned"), _side(tmp_path, ids, BASE, "base")
    inputs = {
        "tuned_scores": tuned[0],
        "tuned_responses": tuned[1],
        "base_scores": base[0],
        "base_responses": base[1],
        "prompts": prompts,
    }
    return inputs, ids


def test_wins_losses_and_the_rest_by_reward_difference(tmp_path):
    inputs, ids = _inputs(tmp_path)
    paired = pl.DataFrame(
        {
            "prompt_id": ids,
            "score": [sum(TUNED[i]) / 2 for i in range(6)],
            "score_base": [sum(BASE[i]) / 2 for i in range(6)],
        }
    )
    table = example_table(
        paired, tuned=inputs["tuned_responses"], base=inputs["base_responses"], prompts=inputs["prompts"]
    )  # fmt: skip
    picked = pick_examples(table, k=2, seed=0)
    question = {pid: f"question {i}" for i, pid in enumerate(ids)}
    assert [e["prompt"] for e in picked["best_wins"]] == ["question 0", "question 5"]  # +3, +2
    assert [e["prompt"] for e in picked["worst_losses"]] == ["question 4", "question 1"]  # −4, −2
    rest = {e["prompt_id"] for e in picked["random"]}
    assert len(rest) == 2 and rest <= {ids[2], ids[3]}  # the only prompts left
    first = picked["best_wins"][0]
    assert first["tuned"] == "tuned answer 0 to 0" and first["base"] == "base answer 0 to 0"
    assert (first["reward_tuned"], first["reward_base"]) == (4.0, 1.0)
    assert all(e["prompt"] == question[e["prompt_id"]] for kind in picked.values() for e in kind)


def test_the_reports_carry_the_examples(tmp_path):
    inputs, ids = _inputs(tmp_path)
    result = compare_policies(inputs, config=CompareConfig(n_boot=200), out_dir=tmp_path / "out")
    report = json.loads(result.output.read_text())
    examples = report["examples"]
    assert [e["prompt_id"] for e in examples["best_wins"]] == [ids[0], ids[5], ids[2]]
    assert [e["prompt_id"] for e in examples["worst_losses"]] == [ids[4], ids[1]]
    assert [e["prompt_id"] for e in examples["random"]] == [ids[3]]
    html = (tmp_path / "out" / "eval_report.html").read_text()
    assert html.count("class='ex'") == 6 and "tuned answer 0 to 4" in html
    markdown = (tmp_path / "out" / "eval_report.md").read_text()
    assert "3.000 vs 5.000 — question 1" not in markdown  # per-prompt means, not a sample's
    assert "0.000 vs 4.000 — question 4" in markdown
