"""The train stage on the tiny policy: it learns the pairs, resumes exactly, and its guards fire."""

from __future__ import annotations

import json

import pytest
import torch

from prefsmith.schemas.config_base import parse_config
from prefsmith.schemas.contracts import ScoreTransform
from prefsmith.schemas.errors import ConfigError, StageError
from prefsmith.schemas.io import read_table
from prefsmith.schemas.manifest import Manifest, manifest_path
from prefsmith.schemas.tables import PAIRS_WITH_REFERENCE
from prefsmith.schemas.train_configs import ReferenceConfig, TrainConfig
from prefsmith.training import trainer as trainer_module
from prefsmith.training.collate import PairCollator
from prefsmith.training.logprobs import completion_logps
from prefsmith.training.losses import dpo
from prefsmith.training.pair_batch import PairBatch
from prefsmith.training.reference import reference_pass
from prefsmith.training.render import render_pairs
from prefsmith.training.stage import main, train

BASE = {
    "max_length": 128,
    "max_prompt_length": 64,
    "per_device_train_batch_size": 4,
    "warmup_ratio": 0.0,
    "logging_steps": 5,
    "save_steps": 0,
    "seed": 0,
}


@pytest.fixture
def pairs_ref(tiny, pairs_file, tmp_path):
    config = parse_config(
        ReferenceConfig, {"model": str(tiny.policy), "max_length": 128, "max_prompt_length": 64}
    )
    return reference_pass({"pairs": pairs_file}, config=config, out_dir=tmp_path / "ref").output


def _config(tiny, **overrides) -> TrainConfig:
    return parse_config(TrainConfig, {"policy": str(tiny.policy), **BASE, **overrides})


def dpo_on_pairs(model_dir, pairs) -> tuple[float, float]:
    """Mean DPO loss and implicit-reward accuracy over every pair, computed outside the trainer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    rows = read_table(pairs, PAIRS_WITH_REFERENCE).to_pylist()
    rendered, _ = render_pairs(
        rows,
        tokenizer=tokenizer,
        end_ids=[tokenizer.eos_token_id],
        max_length=128,
        max_prompt_length=64,
    )
    examples = [
        {"prompt_ids": r.prompt_ids, "chosen_ids": r.chosen_ids, "rejected_ids": r.rejected_ids}
        for r in rendered
    ]
    batch = PairCollator(pad_token_id=tokenizer.pad_token_id)(examples)
    with torch.no_grad():
        logps, tokens = completion_logps(
            model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
        )
    chosen, rejected = logps.chunk(2)
    ref = torch.tensor(
        [[r["ref_logp_chosen"], r["ref_logp_rejected"]] for r in rows], dtype=torch.float32
    )
    per_pair, metrics = dpo(
        PairBatch(
            policy_chosen_logps=chosen,
            policy_rejected_logps=rejected,
            chosen_tokens=tokens[:16].float(),
            rejected_tokens=tokens[16:].float(),
            ref_chosen_logps=ref[:, 0],
            ref_rejected_logps=ref[:, 1],
        )
    )
    return float(per_pair.mean()), float(metrics["rewards/accuracies"])


def test_training_lowers_the_loss_and_raises_accuracy(tiny, pairs_ref, tmp_path):
    config = _config(tiny, max_steps=30, learning_rate=1e-3, lr_scheduler_type="constant")
    result = train({"pairs": pairs_ref}, config=config, out_dir=tmp_path / "run")
    loss_before, accuracy_before = dpo_on_pairs(tiny.policy, pairs_ref)
    loss_after, accuracy_after = dpo_on_pairs(result.output, pairs_ref)
    assert (
        loss_before == pytest.approx(0.693147, abs=1e-4) and accuracy_before == 0.0
    )  # policy == reference
    assert loss_after < 0.5 * loss_before
    assert accuracy_after >= 0.9
    assert (result.output / "model.safetensors").is_file() and (
        result.output / "tokenizer.json"
    ).is_file()
    summary = json.loads((result.output / "prefsmith_train.json").read_text())
    assert summary["global_step"] == 30 and summary["config"]["learning_rate"] == 1e-3
    assert "rewards/accuracies" in summary["last_log"] and "logps/chosen" in summary["last_log"]
    manifest = Manifest.read(result.manifest)
    assert (manifest.unit, manifest.rows_in, manifest.rows_out, manifest.dropped) == (
        "pair",
        16,
        16,
        {},
    )


def _params(folder) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_stop_and_resume_reaches_the_uninterrupted_parameters(tiny, pairs_ref, tmp_path):
    common = {"learning_rate": 1e-3, "lr_scheduler_type": "constant", "save_steps": 3}
    straight = train(
        {"pairs": pairs_ref}, config=_config(tiny, max_steps=6, **common), out_dir=tmp_path / "a"
    )
    train({"pairs": pairs_ref}, config=_config(tiny, max_steps=3, **common), out_dir=tmp_path / "b")
    assert (tmp_path / "b" / "checkpoints" / "checkpoint-3").is_dir()
    resumed = train(
        {"pairs": pairs_ref},
        config=_config(tiny, max_steps=6, resume=True, **common),
        out_dir=tmp_path / "b",
    )
    a, b = _params(straight.output), _params(resumed.output)
    start = _params(tiny.policy)
    assert a.keys() == b.keys()
    assert max((a[k] - start[k]).abs().max().item() for k in a) > 1e-3  # it did train
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


def test_missing_reference_stops_before_loading(tiny, pairs_file, tmp_path):
    with pytest.raises(
        StageError, match="loss 'dpo' needs reference log-probs: run `prefsmith reference` first"
    ):
        train({"pairs": pairs_file}, config=_config(tiny, max_steps=1), out_dir=tmp_path / "run")


def test_reference_from_other_lengths_stops_before_the_policy_loads(tiny, pairs_ref, tmp_path):
    """The pairs_ref manifest records the reference pass's lengths; train refuses others (the
    per-pair token check, tests/training/test_guards.py, stays as the second line of defence)."""
    with pytest.raises(ConfigError, match="computed with max_length=128, max_prompt_length=64"):
        train(
            {"pairs": pairs_ref},
            config=_config(tiny, max_steps=1, max_length=24, max_prompt_length=16),
            out_dir=tmp_path / "run",
        )


def test_nan_loss_stops_with_the_step(tiny, pairs_ref, tmp_path, monkeypatch):
    real = trainer_module.combined_loss

    def poisoned(batch, **kwargs):
        per_pair, metrics = real(batch, **kwargs)
        return per_pair * float("nan"), metrics

    monkeypatch.setattr(trainer_module, "combined_loss", poisoned)
    with pytest.raises(
        StageError, match=r"non-finite loss \(nan\) at step 0; metrics: .*rewards/accuracies"
    ):
        train({"pairs": pairs_ref}, config=_config(tiny, max_steps=2), out_dir=tmp_path / "run")


def test_reference_free_loss_trains_on_plain_pairs_via_the_cli(tiny, pairs_file, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(
        f"train:\n  policy: {tiny.policy}\n  loss: [{{name: simpo, params: {{beta: 2.0}}}}]\n"
        "  nll_weight: 0.1\n  max_steps: 2\n  max_length: 128\n  max_prompt_length: 64\n  save_steps: 0\n"
    )
    code = main(
        [
            "--pairs",
            str(pairs_file),
            "--config",
            str(config),
            "--out",
            str(tmp_path / "run"),
            "--section",
            "train",
        ]
    )
    assert code == 0 and (tmp_path / "run" / "final" / "model.safetensors").is_file()
    summary = json.loads((tmp_path / "run" / "final" / "prefsmith_train.json").read_text())
    assert summary["global_step"] == 2 and summary["config"]["loss"][0]["name"] == "simpo"


def test_cli_prints_one_line_for_user_errors(tiny, pairs_file, tmp_path, capsys):
    config = tmp_path / "train.yaml"
    config.write_text(f"policy: {tiny.policy}\nloss: [{{name: dpo, params: {{betta: 1}}}}]\n")
    assert (
        main(["--pairs", str(pairs_file), "--config", str(config), "--out", str(tmp_path / "o")])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "params.betta" in err


def test_gradient_accumulation_matches_the_larger_batch(tiny, pairs_ref, tmp_path):
    """2 micro-batches of 2 pairs, accumulated, take the same step as one batch of 4."""
    common = {"max_steps": 3, "learning_rate": 1e-3, "lr_scheduler_type": "constant"}
    big = train({"pairs": pairs_ref}, config=_config(tiny, **common), out_dir=tmp_path / "big")
    accumulated = _config(
        tiny, per_device_train_batch_size=2, gradient_accumulation_steps=2, **common
    )
    small = train({"pairs": pairs_ref}, config=accumulated, out_dir=tmp_path / "small")
    a, b = _params(big.output), _params(small.output)
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-5


def test_scores_reach_the_loss_normalized_as_declared(tiny, pairs_file, tmp_path, monkeypatch):
    Manifest(
        stage="pairs",
        unit="prompt",
        config={},
        inputs=[],
        outputs={},
        rows_in=16,
        rows_out=16,
        score_transform=ScoreTransform(method="affine", scale=10.0, shift=-1.0, scorer="test-rule"),
    ).write(manifest_path(pairs_file))
    ref = parse_config(
        ReferenceConfig, {"model": str(tiny.policy), "max_length": 128, "max_prompt_length": 64}
    )
    pairs_ref = reference_pass({"pairs": pairs_file}, config=ref, out_dir=tmp_path / "ref").output
    seen, real = [], trainer_module.combined_loss

    def spy(batch, **kwargs):
        seen.extend(zip(batch.score_chosen.tolist(), batch.score_rejected.tolist(), strict=True))
        return real(batch, **kwargs)

    monkeypatch.setattr(trainer_module, "combined_loss", spy)
    config = _config(tiny, max_steps=4, loss=[{"name": "madpo"}])
    train({"pairs": pairs_ref}, config=config, out_dir=tmp_path / "run")
    rows = read_table(pairs_ref, PAIRS_WITH_REFERENCE).to_pylist()
    expected = {(10 * r["score_chosen"] - 1, 10 * r["score_rejected"] - 1) for r in rows}
    assert len(seen) == 16
    for chosen, rejected in seen:  # float32 in the batch
        assert any(abs(chosen - c) < 1e-4 and abs(rejected - r) < 1e-4 for c, r in expected)


def test_tokenizer_model_mismatch_stops(tiny, pairs_ref, tmp_path):
    import shutil

    policy = tmp_path / "policy"
    shutil.copytree(tiny.policy, policy)
    config = json.loads((policy / "config.json").read_text())
    config["eos_token_id"] = 7
    (policy / "config.json").write_text(json.dumps(config))
    bad = parse_config(TrainConfig, {"policy": str(policy), **BASE, "max_steps": 1})
    with pytest.raises(StageError, match="tokenizer/model mismatch .* eos_token_id is 2"):
        train({"pairs": pairs_ref}, config=bad, out_dir=tmp_path / "run")


def test_gradient_checkpointing_changes_memory_not_the_result(tiny, pairs_ref, tmp_path):
    common = {"max_steps": 2, "learning_rate": 1e-3, "lr_scheduler_type": "constant"}
    plain = train({"pairs": pairs_ref}, config=_config(tiny, **common), out_dir=tmp_path / "plain")
    checkpointed = _config(tiny, gradient_checkpointing=True, **common)
    recomputed = train({"pairs": pairs_ref}, config=checkpointed, out_dir=tmp_path / "gc")
    a, b = _params(plain.output), _params(recomputed.output)
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


def test_a_finished_train_is_never_stepped_again(tiny, pairs_ref, tmp_path, caplog):
    """Trained to max_steps, then run again with resume: true (in-process and through the
    launcher's entry): the same step count, the same bytes, final/ untouched, same revision."""
    import logging

    from prefsmith.schemas.ids import model_revision
    from prefsmith.training.launch import launch_train

    config = _config(tiny, max_steps=4, save_steps=2, learning_rate=1e-3, resume=True)
    out = tmp_path / "ckpt"
    first = train({"pairs": pairs_ref}, config=config, out_dir=out)
    final = first.output
    weights = (final / "model.safetensors").read_bytes()
    times = {p.name: p.stat().st_mtime_ns for p in [*final.iterdir(), first.manifest]}
    revision = model_revision(final)
    assert Manifest.read(first.manifest).extra["global_step"] == 4
    assert (out / "checkpoints" / "checkpoint-4").is_dir()  # a resume point at max_steps
    with caplog.at_level(logging.INFO, logger="prefsmith.training.stage"):
        again = train({"pairs": pairs_ref}, config=config, out_dir=out)
        launched = launch_train({"pairs": pairs_ref}, config=config, out_dir=out)
    assert again == first == launched
    assert caplog.messages.count("train: final/ is complete (step 4), reused") == 2
    summary = json.loads((final / "prefsmith_train.json").read_text())
    assert summary["global_step"] == 4
    assert (final / "model.safetensors").read_bytes() == weights
    assert {p.name: p.stat().st_mtime_ns for p in [*final.iterdir(), first.manifest]} == times
    assert (
        model_revision(final) == revision == Manifest.read(first.manifest).extra["model_revision"]
    )


def test_a_changed_final_or_config_trains_again(tiny, pairs_ref, tmp_path):
    """Not the recorded run: one byte of the weights changed, or another learning rate."""
    config = _config(tiny, max_steps=2, learning_rate=1e-3, resume=True)
    out = tmp_path / "ckpt"
    first = train({"pairs": pairs_ref}, config=config, out_dir=out)
    weights = first.output / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    train({"pairs": pairs_ref}, config=config, out_dir=out)
    assert weights.read_bytes() != bytes(data)  # trained again and re-saved
    saved = weights.stat().st_mtime_ns
    other = config.model_copy(update={"learning_rate": 2e-3, "resume": False})
    train({"pairs": pairs_ref}, config=other, out_dir=out)
    assert weights.stat().st_mtime_ns != saved
