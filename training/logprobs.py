"""Summed completion log-probs without a full float32 `[B, T, V]` logits tensor.

The decoder runs once to its final hidden states (through the model's own forward, so DeepSpeed
and DDP wrappers see the call); the LM head is then applied only at the positions whose next
token is a completion label, in chunks of `chunk_tokens` positions, and `log_softmax` is taken in
float32. A custom autograd function recomputes each chunk's logits in the backward pass, so the
memory for logits is `chunk_tokens x V` floats at any time, forward or backward.

Models whose LM head is not a plain `nn.Linear`, that scale or soft-cap their logits, or whose
forward has no `logits_to_keep`, take the fallback: full logits from the forward (in the model's
dtype), then float32 log-softmax at the selected positions, in chunks.

Right-padded batches drop their attention mask: under causal attention no real token attends to
the pads after it, so the result is the same and SDPA takes its causal fast path.

`pair_logps` reads either batch layout of `prefsmith.training.collate` (concatenated `[chosen; rejected]`
rows, or one `[prompt | chosen | rejected]` row per pair with a block mask) and returns the same
`(2B,)` values, chosen first; `completion_logps` is the plain per-sequence form (reference pass).
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_LOGIT_SCALING = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier")


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DeepSpeed / DDP wrappers (they keep it as `.module`)."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return model


def has_fast_path(model: nn.Module) -> bool:
    """Whether the hidden-states + chunked-LM-head path applies to this model."""
    inner = unwrap(model)
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    config = inner.config.get_text_config() if hasattr(inner, "config") else None
    scaled = config is None or any(getattr(config, k, None) is not None for k in _LOGIT_SCALING)
    takes_keep = "logits_to_keep" in inspect.signature(inner.forward).parameters
    return isinstance(head, nn.Linear) and not scaled and takes_keep


def causal_mask_or_none(attention_mask: Tensor | None) -> Tensor | None:
    """None when every row is right-padded (ones then zeros): causal attention is then exact."""
    if attention_mask is None:
        return None
    right_padded = bool((attention_mask[:, 1:] <= attention_mask[:, :-1]).all())
    return None if right_padded else attention_mask


def _wide(tensor: Tensor) -> Tensor:
    """At least float32 (bf16/fp16 logits are widened; a float64 model keeps float64)."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


class _ChunkedTokenLogps(torch.autograd.Function):
    """log p(target | hidden) per position, LM head applied chunk by chunk, logits never kept."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk):  # (M, H), (V, H), (V,)|None, (M,)
        wide = torch.promote_types(hidden.dtype, torch.float32)
        out = torch.empty(hidden.shape[0], dtype=wide, device=hidden.device)  # (M,)
        for start in range(0, hidden.shape[0], chunk):
            logits = _wide(F.linear(hidden[start : start + chunk], weight, bias))  # (n, V)
            picked = logits.gather(1, targets[start : start + chunk, None]).squeeze(1)  # (n,)
            out[start : start + chunk] = picked - logits.logsumexp(dim=-1)  # (n,)
        ctx.save_for_backward(hidden, weight, bias, targets)
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx, grad):  # grad (M,)
        hidden, weight, bias, targets = ctx.saved_tensors
        w32 = _wide(weight)  # (V, H)
        grad_hidden = torch.empty_like(hidden)  # (M, H)
        grad_weight = torch.zeros_like(w32)  # (V, H)
        grad_bias = None if bias is None else torch.zeros_like(_wide(bias))  # (V,)
        for start in range(0, hidden.shape[0], ctx.chunk):
            h = hidden[start : start + ctx.chunk].to(w32.dtype)  # (n, H)
            b = None if bias is None else bias.to(w32.dtype)
            probs = F.linear(h, w32, b).softmax(dim=-1)  # (n, V)
            g = grad[start : start + ctx.chunk].to(w32.dtype)  # (n,)
            # d log p_t / d logits = onehot(t) - softmax
            dlogits = -probs * g[:, None]  # (n, V)
            dlogits.scatter_add_(1, targets[start : start + ctx.chunk, None], g[:, None])
            grad_hidden[start : start + ctx.chunk] = (dlogits @ w32).to(hidden.dtype)  # (n, H)
            grad_weight.addmm_(dlogits.t(), h)  # (V, H)
            if grad_bias is not None:
                grad_bias += dlogits.sum(dim=0)  # (V,)
        grad_bias = None if grad_bias is None else grad_bias.to(bias.dtype)
        return grad_hidden, grad_weight.to(weight.dtype), grad_bias, None, None


def _logps_from_logits(logits: Tensor, targets: Tensor) -> Tensor:
    logits = _wide(logits)  # (n, V)
    return logits.gather(1, targets[:, None]).squeeze(1) - logits.logsumexp(dim=-1)  # (n,)


def _head_logps(head: nn.Module, hidden: Tensor, targets: Tensor) -> Tensor:
    return _logps_from_logits(head(hidden), targets)  # (n,)


def token_logps(head: nn.Module, hidden: Tensor, targets: Tensor, *, chunk_tokens: int) -> Tensor:
    """log-probs `(M,)` (at least float32) of `targets (M,)` from final hidden states `(M, H)`.

    A ZeRO-3 partitioned head (its weight has `ds_id`) must be called as a module so DeepSpeed
    gathers it: each chunk then runs under activation checkpointing instead.
    """
    weight = head.weight
    if not hasattr(weight, "ds_id"):
        return _ChunkedTokenLogps.apply(hidden, weight, head.bias, targets, chunk_tokens)
    parts = [
        torch.utils.checkpoint.checkpoint(
            _head_logps,
            head,
            hidden[s : s + chunk_tokens],
            targets[s : s + chunk_tokens],
            use_reentrant=False,
        )
        for s in range(0, hidden.shape[0], chunk_tokens)
    ]
    return torch.cat(parts) if parts else _wide(hidden.new_zeros(0))


def logps_at(
    model: nn.Module,
    input_ids: Tensor,
    *,
    rows: Tensor,
    positions: Tensor,
    targets: Tensor,
    chunk_tokens: int,
    attention_mask: Tensor | None = None,
    position_ids: Tensor | None = None,
) -> Tensor:
    """log p(`targets`) `(M,)` from the outputs at (`rows`, `positions`) `(M,)`, one forward.

    `attention_mask` may be 2D `(N, T)`, a prepared 4D boolean mask `(N, 1, T, T)`, or None
    (plain causal attention).
    """
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
    if position_ids is not None:
        kwargs["position_ids"] = position_ids
    if has_fast_path(model):
        hidden = model(**kwargs, output_hidden_states=True, logits_to_keep=1).hidden_states[
            -1
        ]  # (N, T, H)
        head = unwrap(model).get_output_embeddings()
        return token_logps(
            head, hidden[rows, positions], targets, chunk_tokens=chunk_tokens
        )  # (M,)
    picked = model(**kwargs).logits[rows, positions]  # (M, V) in the model's dtype
    parts = [
        _logps_from_logits(picked[s : s + chunk_tokens], targets[s : s + chunk_tokens])
        for s in range(0, picked.shape[0], chunk_tokens)
    ]
    return torch.cat(parts) if parts else _wide(picked.new_zeros(0))


def completion_logps(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor | None,
    labels_mask: Tensor,
    *,
    chunk_tokens: int = 2048,
) -> tuple[Tensor, Tensor]:
    """Sum of log p(token | prefix) over the tokens where `labels_mask` is set, per row.

    Args:
        model: a causal LM (possibly inside a DeepSpeed / DDP wrapper).
        input_ids: `(N, T)` token ids.
        attention_mask: `(N, T)` 1 for real tokens, or None.
        labels_mask: `(N, T)` bool, True at completion tokens (prompt and pads False). Position 0
            can never be a label: nothing predicts it.
        chunk_tokens: positions per LM-head chunk.

    Returns:
        summed log-probs `(N,)` (float32; float64 for a float64 model), differentiable, and
        token counts `(N,)` int64.
    """
    select = labels_mask[:, 1:].bool()  # (N, T-1): position i predicts token i+1
    rows, positions = select.nonzero(as_tuple=True)  # (M,), (M,)
    per_token = logps_at(
        model,
        input_ids,
        rows=rows,
        positions=positions,
        targets=input_ids[rows, positions + 1],
        chunk_tokens=chunk_tokens,
        attention_mask=causal_mask_or_none(attention_mask),
    )  # (M,)
    summed = per_token.new_zeros(input_ids.shape[0]).index_add(0, rows, per_token)  # (N,)
    return summed, select.sum(dim=1)


def shared_prompt_logps(
    model: nn.Module, batch: dict[str, Tensor], *, chunk_tokens: int
) -> tuple[Tensor, Tensor]:
    """Summed log-probs of pairs laid out as `[prompt | chosen | rejected]` blocks, one or several
    per row (see `prefsmith.training.collate`): the prompt runs once per pair, and the 4D mask keeps
    the rejected tokens from seeing the chosen ones and every pair from seeing another, so every
    value equals the unpacked computation.

    Returns `(2B,)` summed log-probs and `(2B,)` token counts, chosen rows first.
    """
    input_ids, completion = batch["input_ids"], batch["completion_mask"]  # (R, L), (R, L)
    # B pairs in R <= B rows (packed: several per row); the collator sets `weight` for packed rows
    n_pairs = batch["weight"].shape[0] if "weight" in batch else input_ids.shape[0]
    rows, cols = completion.nonzero(as_tuple=True)  # (M,), (M,)
    slot = batch["pair_index"][rows, cols]  # (M,) the pair each token belongs to
    out = slot + n_pairs * batch["rejected_mask"][rows, cols].long()  # (M,) in [0, 2B)
    per_token = logps_at(
        model,
        input_ids,
        rows=rows,
        positions=batch["predictor"][rows, cols],
        targets=input_ids[rows, cols],
        chunk_tokens=chunk_tokens,
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
    )  # (M,)
    n_out = 2 * n_pairs
    summed = per_token.new_zeros(n_out).index_add(0, out, per_token)  # (2B,)
    return summed, torch.bincount(out, minlength=n_out)


def pair_logps(
    model: nn.Module, batch: dict[str, Tensor], *, chunk_tokens: int
) -> tuple[Tensor, Tensor]:
    """`(2B,)` summed completion log-probs and token counts of a collated pair batch, chosen
    first, in either layout of `prefsmith.training.collate.PairCollator`."""
    if "predictor" in batch:
        return shared_prompt_logps(model, batch, chunk_tokens=chunk_tokens)
    return completion_logps(
        model,
        batch["input_ids"],
        batch["attention_mask"],
        batch["completion_mask"],
        chunk_tokens=chunk_tokens,
    )
