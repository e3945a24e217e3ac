"""The reference pass: values equal an independent forward; a second run reuses the output."""

from __future__ import annotations

import shutil

import pytest
import torch

from prefsmith.schemas.config_base import parse_config
from prefsmith.schemas.contracts import ScoreTransform, TokenLengths
from prefsmith.schemas.io import read_frame, write_table
from prefsmith.schemas.manifest import Manifest, manifest_path
from prefsmith.schemas.tables import PAIRS, PAIRS_WITH_REFERENCE, QUARANTINE
from prefsmith.schemas.train_configs import ReferenceConfig
from prefsmith.training import reference
from prefsmith.training.reference import reference_pass

TRANSFORM = ScoreTransform(method="affine", scale=2.0, shift=0.5, scorer="test-rule")
RAISE_ON_SYSTEM = (
    "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}"
)


@pytest.fixture
def ref_model(tiny, tmp_path):
    """A copy of the tiny policy whose template refuses a system message (a quarantine case)."""
    folder = tmp_path / "ref-model"
    shutil.copytree(tiny.policy, folder)
    template = folder / "chat_template.jinja"
    template.write_text(RAISE_ON_SYSTEM + template.read_text())
    return folder


@pytest.fixture
def pairs(tmp_path, pair_rows):
    rows = pair_rows(6, seed=3)
    bad = dict(
        rows[0], pair_id="bad", messages=[{"role": "system", "content": "x"}, *rows[0]["messages"]]
    )
    path = write_table([*rows, bad], tmp_path / "pairs.parquet", PAIRS)
    Manifest(
        stage="pairs",
        unit="prompt",
        config={},
        inputs=[],
        outputs={},
        rows_in=7,
        rows_out=7,
        score_transform=TRANSFORM,
    ).write(manifest_path(path))
    return path


def independent_logp(model, tokenizer, messages, response) -> tuple[float, int]:
    """HF's own apply_chat_template(tokenize=True), one unpadded forward, float64 log_softmax."""
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True)["input_ids"]
    full = tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": response}])[
        "input_ids"
    ]
    completion = full[len(prompt) :]
    ids = prompt + completion[: completion.index(tokenizer.eos_token_id) + 1]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()  # (T, V)
    logp = (
        logits.log_softmax(-1)[:-1].gather(1, torch.tensor(ids[1:])[:, None]).squeeze(1)
    )  # (T-1,)
    return float(logp[len(prompt) - 1 :].sum()), len(ids) - len(prompt)


def test_values_equal_an_independent_forward_and_counts_reconcile(ref_model, pairs, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = parse_config(
        ReferenceConfig,
        {"model": str(ref_model), "max_length": 256, "max_prompt_length": 128, "token_budget": 64},
    )
    result = reference_pass({"pairs": pairs}, config=config, out_dir=tmp_path / "out")
    table = read_frame(result.output, PAIRS_WITH_REFERENCE)
    manifest = Manifest.read(result.manifest)
    assert (manifest.rows_in, manifest.rows_out, manifest.dropped) == (7, 6, {"template_error": 1})
    assert manifest.unit == "pair" and manifest.extra["reused"] is False
    assert manifest.score_transform == TRANSFORM  # carried from the pairs manifest, typed
    assert manifest.lengths == TokenLengths(max_length=256, max_prompt_length=128)
    assert read_frame(result.quarantine, QUARANTINE)["row_ref"].to_list() == ["bad"]
    model = AutoModelForCausalLM.from_pretrained(str(ref_model))
    tokenizer = AutoTokenizer.from_pretrained(str(ref_model))
    for row in table.iter_rows(named=True):
        for side in ("chosen", "rejected"):
            value, tokens = independent_logp(model, tokenizer, row["messages"], row[side])
            assert row[f"ref_logp_{side}"] == pytest.approx(value, abs=1e-4)
            assert row[f"ref_tokens_{side}"] == tokens
    assert table["ref_model"].unique().to_list() == [
        f"ref-model@{manifest.extra['model_revision'][:12]}"
    ]


def test_second_run_reuses_without_loading_the_model(ref_model, pairs, tmp_path, monkeypatch):
    config = parse_config(
        ReferenceConfig, {"model": str(ref_model), "max_length": 256, "max_prompt_length": 128}
    )
    first = reference_pass({"pairs": pairs}, config=config, out_dir=tmp_path / "out")
    before = first.output.read_bytes()

    def refuse(_config):
        raise AssertionError("the reference model was loaded")

    monkeypatch.setattr(reference, "load_reference_model", refuse)
    second = reference_pass({"pairs": pairs}, config=config, out_dir=tmp_path / "out")
    manifest = Manifest.read(second.manifest)
    assert manifest.extra["reused"] is True and manifest.rows_out == 6
    assert second.output.read_bytes() == before
    assert (manifest.score_transform, manifest.lengths) == (TRANSFORM, TokenLengths.of(config))
    changed = config.model_copy(update={"max_length": 200})  # another key: must recompute
    with pytest.raises(AssertionError, match="was loaded"):
        reference_pass({"pairs": pairs}, config=changed, out_dir=tmp_path / "out")


def test_changed_pairs_change_the_key(ref_model, pairs, tmp_path, monkeypatch, pair_rows):
    config = parse_config(
        ReferenceConfig, {"model": str(ref_model), "max_length": 256, "max_prompt_length": 128}
    )
    reference_pass({"pairs": pairs}, config=config, out_dir=tmp_path / "out")
    write_table(pair_rows(6, seed=4), pairs, PAIRS)
    monkeypatch.setattr(
        reference,
        "load_reference_model",
        lambda _c: (_ for _ in ()).throw(AssertionError("loaded")),
    )
    with pytest.raises(AssertionError, match="loaded"):
        reference_pass({"pairs": pairs}, config=config, out_dir=tmp_path / "out")


def test_reuse_carries_the_transform_the_pairs_declare_now(ref_model, pairs, tmp_path, monkeypatch):
    """Renormalized pairs have the same rows: the log-probs are reused, the transform is new."""
    config = parse_config(
        ReferenceConfig, {"model": str(ref_model), "max_length": 256, "max_prompt_length": 128}
    )
    reference_pass({"pairs": pairs}, config=config, out_dir=tmp_path / "out")
    renormalized = ScoreTransform(method="zscore", scale=4.0, shift=-3.0, scorer="test-rule")
    old = Manifest.read(manifest_path(pairs))
    old.model_copy(update={"score_transform": renormalized}).write(manifest_path(pairs))
    monkeypatch.setattr(
        reference,
        "load_reference_model",
        lambda _c: (_ for _ in ()).throw(AssertionError("loaded")),
    )
    second = Manifest.read(
        reference_pass({"pairs": pairs}, config=config, out_dir=tmp_path / "out").manifest
    )
    assert second.extra["reused"] is True and second.score_transform == renormalized
