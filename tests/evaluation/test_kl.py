"""KL(policy ‖ reference) on the policy's samples, against a direct float64 forward pass."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from prefsmith.evaluation.kl import KL_SAMPLES, kl_estimate, sample_kl, summarize_kl
from prefsmith.schemas.eval_configs import PolicyReferenceConfig
from prefsmith.schemas.io import read_frame
from prefsmith.schemas.manifest import Manifest
from prefsmith.schemas.tables import PROMPTS, RESPONSES
from prefsmith.schemas.train_configs import ReferenceConfig


def test_sample_kl_by_hand():
    """lp = [-1, -2], lr = [-1.5, -1]: d = [-0.5, 1]; k1 = 0.5 - 1 = -0.5;
    k3 = (e^-0.5 - 1 + 0.5) + (e^1 - 1 - 1) = 0.106531 + 0.718282."""
    k1, k3 = sample_kl(np.array([-1.0, -2.0]), np.array([-1.5, -1.0]))
    assert k1 == pytest.approx(-0.5)
    assert k3 == pytest.approx(np.exp(-0.5) - 0.5 + np.e - 2)


def test_summary_is_token_weighted():
    frame = pl.DataFrame({"kl_seq": [1.0, 3.0], "k3_seq": [0.5, 0.5], "tokens": [1, 3]})
    s = summarize_kl(frame)
    assert (s["kl_seq_mean"], s["kl_per_token"], s["k3_seq_mean"]) == (2.0, 1.0, 0.5)
    assert s["kl_seq_se"] == pytest.approx(np.std([1.0, 3.0], ddof=1) / np.sqrt(2))
    assert summarize_kl(frame.clear())["kl_seq_mean"] is None


def oracle_logps(model_dir, messages, response) -> np.ndarray:
    """Per-token log-probs of the completion (to EOS) by a plain float64 forward and log_softmax."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).double().eval()
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(
        [*messages, {"role": "assistant", "content": response}], tokenize=False
    )
    p_ids, f_ids = (tok(t, add_special_tokens=False)["input_ids"] for t in (prompt, full))
    assert f_ids[: len(p_ids)] == p_ids
    completion = f_ids[len(p_ids) :]
    completion = completion[: completion.index(tok.eos_token_id) + 1]
    ids = torch.tensor([p_ids + completion])  # (1, T)
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)  # (T, V)
    targets = ids[0, len(p_ids) :]  # (C,)
    return logp[len(p_ids) - 1 : -1].gather(1, targets[:, None]).squeeze(1).numpy()  # (C,)


def test_kl_matches_a_direct_float64_computation(tiny, tuned_policy, heldout, tmp_path):
    prompts, responses, _ = heldout
    result = kl_estimate(
        {"responses": responses, "prompts": prompts},
        config=PolicyReferenceConfig(
            policy=str(tuned_policy), reference=ReferenceConfig(model=str(tiny.policy))
        ),
        out_dir=tmp_path / "kl",
    )
    got = read_frame(result.output, KL_SAMPLES).sort("response_id")
    assert got.height == 6 and got["kl_seq"].abs().min() > 1e-3  # the noise moved every sample
    messages = dict(read_frame(prompts, PROMPTS).select("prompt_id", "messages").iter_rows())
    texts = dict(read_frame(responses, RESPONSES).select("response_id", "response").iter_rows())
    for row in got.iter_rows(named=True):
        msgs = [dict(m) for m in messages[row["prompt_id"]]]
        lp = oracle_logps(tuned_policy, msgs, texts[row["response_id"]])
        lr = oracle_logps(tiny.policy, msgs, texts[row["response_id"]])
        assert row["tokens"] == lp.size
        assert row["logp_policy"] == pytest.approx(lp.sum(), abs=2e-4)
        assert row["logp_reference"] == pytest.approx(lr.sum(), abs=2e-4)
        assert row["kl_seq"] == pytest.approx(np.sum(lp - lr), abs=3e-4)
        assert row["k3_seq"] == pytest.approx(np.sum(np.expm1(lr - lp) - (lr - lp)), abs=3e-4)
        assert row["k3_seq"] >= 0
    manifest = Manifest.read(result.manifest)
    assert (manifest.rows_in, manifest.rows_out, manifest.dropped) == (7, 6, {"unknown_prompt": 1})
    assert manifest.extra["summary"]["kl_seq_mean"] == pytest.approx(got["kl_seq"].mean())


def test_kl_of_a_model_against_itself_is_zero(tiny, heldout, tmp_path):
    prompts, responses, _ = heldout
    result = kl_estimate(
        {"responses": responses, "prompts": prompts},
        config=PolicyReferenceConfig(
            policy=str(tiny.policy), reference=ReferenceConfig(model=str(tiny.policy))
        ),
        out_dir=tmp_path,
    )
    got = read_frame(result.output, KL_SAMPLES)
    assert got.height == 6 and (got["tokens"] > 1).all()
    assert got["kl_seq"].abs().max() == 0.0 and got["k3_seq"].abs().max() == 0.0
    assert (got["logp_policy"] < 0).all()
