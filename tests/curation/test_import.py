"""`prefsmith import`: hand-written rows in the shapes of well-known public preference datasets
(ultrafeedback_binarized, TRL standard and conversational, Anthropic HH, all_generated_responses +
all_rm_scores) into prefsmith's tables, with the declared normalization, bad rows quarantined and
counts that reconcile; then the reference pass and two Uni-DPO steps on what was imported."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prefsmith.curation.importer import import_preferences
from prefsmith.curation.pairs import build_pairs
from prefsmith.schemas.config_base import parse_config
from prefsmith.schemas.data_configs import PairsConfig
from prefsmith.schemas.errors import ConfigError
from prefsmith.schemas.import_config import ImportConfig
from prefsmith.schemas.io import read_table
from prefsmith.schemas.manifest import Manifest, read_score_transform
from prefsmith.schemas.tables import PAIRS, QUARANTINE


def conversation(question: str, answer: str) -> list[dict]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def ultrafeedback(i: int, chosen: float, rejected: float) -> dict:
    question = f"Name a small animal number {i}."
    return {
        "prompt": question,
        "prompt_id": f"uf{i}",
        "chosen": conversation(question, f"a mouse {i}"),
        "rejected": conversation(question, f"an elephant, which is large {i}"),
        "messages": conversation(question, f"a mouse {i}"),
        "score_chosen": chosen,
        "score_rejected": rejected,
    }


UF_SCORES = [(9.0, 2.0), (7.5, 6.0), (8.0, 4.5), (10.0, 1.0), (6.0, 5.5), (9.5, 3.0)]
UF_ROWS = [ultrafeedback(i, c, r) for i, (c, r) in enumerate(UF_SCORES)]
BAD_ROWS = [
    {**ultrafeedback(90, 5.0, 4.0), "rejected": conversation("x", "a mouse 90")},  # identical
    {**ultrafeedback(91, 5.0, 4.0), "score_chosen": float("nan")},
    {"prompt": "no answers here"},
    ultrafeedback(0, *UF_SCORES[0]),  # the first row again
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, allow_nan=True) + "\n" for r in rows))
    return path


def run(tmp_path, rows, **options):
    source = write_jsonl(tmp_path / "data.jsonl", rows)
    config = parse_config(ImportConfig, {"path": str(source), **options})
    result = import_preferences({}, config=config, out_dir=tmp_path / "out")
    quarantined = read_table(result.quarantine, QUARANTINE).to_pylist()
    return result, Manifest.read(result.manifest), quarantined


def test_ultrafeedback_pairs_with_zscore_normalization(tmp_path):
    result, manifest, quarantined = run(
        tmp_path, UF_ROWS + BAD_ROWS, normalization={"method": "zscore"}
    )
    pairs = read_table(result.output, PAIRS).to_pylist()
    assert len(pairs) == 6 and {p["strategy"] for p in pairs} == {"imported"}
    first = next(p for p in pairs if p["chosen"] == "a mouse 0")
    assert first["messages"] == [{"role": "user", "content": "Name a small animal number 0."}]
    assert (first["score_chosen"], first["score_rejected"], first["margin"]) == (9.0, 2.0, 7.0)
    assert sorted(q["reason"] for q in quarantined) == [
        "duplicate_pair",
        "identical_pair",
        "missing_field",
        "non_finite_score",
    ]
    assert manifest.rows_in == 10 == manifest.rows_out + sum(manifest.dropped.values())
    raw = np.array([s for pair in UF_SCORES for s in pair])  # every imported score
    transform = read_score_transform(result.output)  # what reference and train will read
    assert transform.method == "zscore" and transform.scorer == "imported"
    assert transform.scale == pytest.approx(1 / raw.std())
    assert transform.shift == pytest.approx(-raw.mean() / raw.std())


def test_trl_standard_and_conversational_rows(tmp_path):
    rows = [
        {"prompt": "Say hi.", "chosen": "hi", "rejected": "no"},  # standard, no scores
        {  # conversational with an implicit prompt: the prompt is the chosen turns but the last
            "chosen": conversation("Count to two.", "one two"),
            "rejected": conversation("Count to two.", "three"),
        },
    ]
    result, manifest, quarantined = run(tmp_path, rows)
    pairs = sorted(read_table(result.output, PAIRS).to_pylist(), key=lambda p: p["chosen"])
    assert [(p["messages"][-1]["content"], p["chosen"], p["rejected"]) for p in pairs] == [
        ("Say hi.", "hi", "no"),
        ("Count to two.", "one two", "three"),
    ]
    assert all(p["score_chosen"] is None and p["margin"] is None for p in pairs)
    assert quarantined == [] and manifest.score_transform.method == "none"
    with pytest.raises(ConfigError, match="have no scores"):
        run(tmp_path, rows, normalization={"method": "zscore"})


def test_hh_transcripts(tmp_path):
    shared = "\n\nHuman: What is a bee?\n\nAssistant: An insect.\n\nHuman: Does it sting?"
    rows = [
        {
            "chosen": shared + "\n\nAssistant: Some do.",
            "rejected": shared + "\n\nAssistant: Never.",
        },
        {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: c\n\nAssistant: d"},
    ]
    result, manifest, quarantined = run(tmp_path, rows, shape="hh")
    (pair,) = read_table(result.output, PAIRS).to_pylist()
    assert [m["role"] for m in pair["messages"]] == ["user", "assistant", "user"]
    assert (pair["chosen"], pair["rejected"]) == ("Some do.", "Never.")
    assert [q["reason"] for q in quarantined] == ["prompts_differ"]
    assert manifest.rows_in == 2 == manifest.rows_out + sum(manifest.dropped.values())


def test_scored_responses_are_re_paired_by_the_pairs_stage(tmp_path):
    rows = [
        {
            "prompt": "Pick a colour.",
            "all_generated_responses": ["red", "blue", "green"],
            "all_rm_scores": [0.2, 0.9, -0.4],
        },
        {
            "prompt": "Pick a fruit.",
            "all_generated_responses": ["apple", "pear"],
            "all_rm_scores": [1.5],
        },  # one score for two responses
    ]
    result, manifest, quarantined = run(tmp_path, rows, shape="responses")
    assert [q["reason"] for q in quarantined] == ["responses_scores_mismatch"]
    assert manifest.rows_written["responses"] == 3 == manifest.rows_written["scores"]
    inputs = {
        "scores": result.more["scores"],
        "responses": result.output,
        "prompts": result.more["prompts"],
    }
    pairs = build_pairs(inputs, config=PairsConfig(), out_dir=tmp_path / "pairs")
    (pair,) = read_table(pairs.output, PAIRS).to_pylist()
    assert (pair["chosen"], pair["rejected"]) == ("blue", "green")  # best vs worst
    assert pair["margin"] == pytest.approx(1.3)


@pytest.mark.slow
def test_imported_pairs_train_two_unidpo_steps_with_normalized_scores(tmp_path, tiny, monkeypatch):
    """The declared z-score reaches the loss: the scores the trainer sees are the normalized
    ones, so Uni-DPO's quality weight differs between pairs (raw 1–10 ratings saturate it)."""
    import torch

    from prefsmith.schemas.train_configs import ReferenceConfig, TrainConfig
    from prefsmith.training import trainer as trainer_module
    from prefsmith.training.reference import reference_pass
    from prefsmith.training.stage import train

    result, _, _ = run(tmp_path, UF_ROWS, normalization={"method": "zscore"})
    lengths = {"max_length": 96, "max_prompt_length": 48}
    ref = ReferenceConfig(model=str(tiny.policy), **lengths)
    pairs_ref = reference_pass({"pairs": result.output}, config=ref, out_dir=tmp_path / "ref")
    transform = read_score_transform(result.output)
    seen, real = [], trainer_module.combined_loss

    def spy(batch, **kwargs):
        seen.append((batch.score_chosen.detach().clone(), batch.score_rejected.detach().clone()))
        return real(batch, **kwargs)

    monkeypatch.setattr(trainer_module, "combined_loss", spy)
    config = TrainConfig(
        policy=str(tiny.policy),
        loss=[{"name": "unidpo"}],
        max_steps=2,
        per_device_train_batch_size=3,
        save_steps=0,
        learning_rate=1e-4,
        **lengths,
    )
    train({"pairs": pairs_ref.output}, config=config, out_dir=tmp_path / "ckpt")
    chosen, rejected = (torch.cat([s[i] for s in seen]).double() for i in (0, 1))
    raw = {transform.apply(c): c for c, _ in UF_SCORES}
    assert all(min(abs(v - k) for k in raw) < 1e-6 for v in chosen.tolist())  # normalized
    w_qual = torch.sigmoid(0.7 * (chosen - rejected))
    assert len(seen) == 2 and w_qual.max() - w_qual.min() > 0.2  # not constant
    raw_w = torch.sigmoid(0.7 * torch.tensor([c - r for c, r in UF_SCORES]))
    assert raw_w.min() > 0.58 and torch.sigmoid(torch.tensor(0.7 * 7.0)) > 0.99  # raw saturates


def test_the_cli_imports_and_stops_in_one_line_on_a_missing_file(tmp_path):
    from typer.testing import CliRunner

    from prefsmith.flows.cli import app

    source = write_jsonl(tmp_path / "uf.jsonl", UF_ROWS)
    done = CliRunner().invoke(app, ["import", str(source), "-o", str(tmp_path / "out")])
    assert done.exit_code == 0, done.output
    assert read_table(tmp_path / "out" / "pairs.parquet", PAIRS).num_rows == len(UF_ROWS)
    missing = CliRunner().invoke(app, ["import", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path)])
    assert missing.exit_code == 2
    assert missing.output.strip().splitlines()[-1].startswith("error: import: file not found")
