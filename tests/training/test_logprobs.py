"""Chunked completion log-probs against a naive full-logits implementation in float64."""

from __future__ import annotations

import pytest
import torch

from prefsmith.training import logprobs
from prefsmith.training.collate import PairCollator
from prefsmith.training.logprobs import causal_mask_or_none, completion_logps, pair_logps
from prefsmith.training.render import render_pairs


@pytest.fixture(scope="module")
def examples(tiny_tokenizer):
    rows = [
        {
            "pair_id": f"p{i}",
            "messages": [{"role": "user", "content": "tell me about the cat " * (i + 1)}],
            "chosen": "the dog runs " * (i + 1),
            "rejected": "no",
        }
        for i in range(3)
    ]
    rendered, _ = render_pairs(
        rows,
        tokenizer=tiny_tokenizer,
        end_ids=[tiny_tokenizer.eos_token_id],
        max_length=128,
        max_prompt_length=64,
    )
    return [
        {"prompt_ids": r.prompt_ids, "chosen_ids": r.chosen_ids, "rejected_ids": r.rejected_ids}
        for r in rendered
    ]


@pytest.fixture(scope="module")
def batch(examples, tiny_tokenizer):
    return PairCollator(pad_token_id=tiny_tokenizer.pad_token_id)(examples)


@pytest.fixture
def model64(tiny):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(tiny.policy), dtype=torch.float64)


def naive(model, batch):
    """Full (N, T, V) logits, log_softmax, gather, mask: the obvious implementation."""
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).logits  # (N, T, V)
    logp = (
        logits.log_softmax(-1)[:, :-1].gather(2, batch["input_ids"][:, 1:, None]).squeeze(2)
    )  # (N, T-1)
    return (logp * batch["completion_mask"][:, 1:]).sum(1)  # (N,)


def test_equals_naive_float64_values_and_gradients(model64, batch):
    ours, counts = completion_logps(
        model64,
        batch["input_ids"],
        batch["attention_mask"],
        batch["completion_mask"],
        chunk_tokens=5,
    )
    weights = torch.linspace(
        0.5, 1.5, ours.shape[0], dtype=torch.float64
    )  # a generic backward signal
    (ours * weights).sum().backward()
    ours_grads = {n: p.grad.clone() for n, p in model64.named_parameters()}
    model64.zero_grad()
    reference = naive(model64, batch)
    (reference * weights).sum().backward()
    assert torch.allclose(ours, reference, atol=1e-6, rtol=0)
    assert counts.tolist() == batch["completion_mask"].sum(1).tolist()
    for name, param in model64.named_parameters():
        assert torch.allclose(ours_grads[name], param.grad, atol=1e-6, rtol=0), name


def test_prompt_positions_do_not_contribute(model64, batch):
    """Only completion positions are summed: masking one more prompt token changes nothing
    but moving the mask onto the prompt gives exactly the naive prompt sum."""
    with torch.no_grad():
        completion, _ = completion_logps(
            model64,
            batch["input_ids"],
            batch["attention_mask"],
            batch["completion_mask"],
            chunk_tokens=64,
        )
        everything = dict(batch, completion_mask=batch["attention_mask"].bool())
        full = naive(model64, everything)
        prompt_only = naive(
            model64,
            dict(batch, completion_mask=everything["completion_mask"] & ~batch["completion_mask"]),
        )
    assert torch.allclose(completion + prompt_only, full, atol=1e-9)
    assert (prompt_only < -1).all()  # the prompt does carry log-prob mass that was left out


@pytest.mark.parametrize("chunk", [1, 7, 10_000])
def test_chunk_size_does_not_change_the_result(model64, batch, chunk):
    with torch.no_grad():
        ours, _ = completion_logps(
            model64,
            batch["input_ids"],
            batch["attention_mask"],
            batch["completion_mask"],
            chunk_tokens=chunk,
        )
        assert torch.allclose(ours, naive(model64, batch), atol=1e-9)


def test_fallback_path_for_models_without_hidden_state_access(model64, batch, monkeypatch):
    monkeypatch.setattr(logprobs, "has_fast_path", lambda model: False)
    ours, _ = completion_logps(
        model64,
        batch["input_ids"],
        batch["attention_mask"],
        batch["completion_mask"],
        chunk_tokens=4,
    )
    assert torch.allclose(ours, naive(model64, batch).detach(), atol=1e-9)


def test_float32_model_is_close_to_float64(tiny, model64, batch):
    from transformers import AutoModelForCausalLM

    model32 = AutoModelForCausalLM.from_pretrained(str(tiny.policy))
    with torch.no_grad():
        ours, _ = completion_logps(
            model32,
            batch["input_ids"],
            batch["attention_mask"],
            batch["completion_mask"],
            chunk_tokens=16,
        )
        assert ours.dtype == torch.float32
        assert torch.allclose(ours.double(), naive(model64, batch), atol=1e-4)


def test_right_padding_drops_the_mask_other_padding_keeps_it():
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    assert causal_mask_or_none(right) is None
    assert causal_mask_or_none(left) is left
    assert causal_mask_or_none(None) is None


def test_shared_prompt_layout_equals_the_concatenated_one(model64, examples):
    """Packing [prompt | chosen | rejected] in one row under a block mask changes nothing.

    Values agree to float64 rounding. Gradients agree to about 1e-7 relative: Llama's RMSNorm
    computes in float32 even in a float64 model, and the packed layout sums the prompt's two
    gradient contributions before that float32 step instead of after it.
    """
    concatenated = PairCollator(pad_token_id=0)(examples)
    shared = PairCollator(pad_token_id=0, layout="shared_prompt")(examples)
    grads, values = [], []
    for batch in (concatenated, shared):
        logps, tokens = pair_logps(model64, batch, chunk_tokens=5)  # (2B,), (2B,)
        (logps * torch.linspace(0.5, 1.5, logps.shape[0], dtype=torch.float64)).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model64.named_parameters()})
        values.append((logps.detach(), tokens))
        model64.zero_grad()
    assert torch.allclose(values[0][0], values[1][0], atol=1e-9, rtol=0)
    assert values[0][1].tolist() == values[1][1].tolist()
    for name, grad in grads[0].items():
        assert torch.allclose(grads[1][name], grad, rtol=0, atol=1e-6 * grad.abs().max().item()), (
            name
        )


def test_bf16_autocast_gives_float32_logps_and_finite_gradients(tiny, batch):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny.policy))
    with torch.no_grad():
        exact, _ = completion_logps(
            model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
        )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours, _ = completion_logps(
            model,
            batch["input_ids"],
            batch["attention_mask"],
            batch["completion_mask"],
            chunk_tokens=8,
        )
    assert ours.dtype == torch.float32
    assert torch.allclose(ours, exact, rtol=0.05, atol=0.5)  # bf16 keeps ~3 significant digits
    ours.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
