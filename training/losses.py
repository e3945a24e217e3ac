"""Preference losses: pure functions of per-pair log-probabilities (see ``spec/losses.md``).

A loss takes a :class:`PairBatch` (every field a tensor of shape ``(B,)``) and keyword-only
hyperparameters, and returns ``(per_pair_loss, metrics)``: the loss *unreduced*, shape ``(B,)``,
and a dict of metrics. :func:`reduce_loss` is the one place where pairs are averaged;
:func:`combined_loss` adds registered losses (and an optional NLL term) with weights. No model,
tokenizer or device logic lives here; every computation stays in the dtype of the inputs.
Each loss's keyword defaults are those of its params model in :mod:`prefsmith.schemas.losses`,
where configs declare and range-check them (a test holds the two equal, name for name).

Notation: ``lw, ll`` summed policy log-probs of the chosen / rejected completion, ``rw, rl`` the
same under the reference, ``Lw, Ll`` completion token counts, ``aw = lw/Lw`` (likewise ``al, arw,
arl``) per-token means, ``S_w, S_l`` normalized scorer scores, ``σ`` the sigmoid, ``sg`` stop-grad.

Metrics: each is a detached 0-d tensor, the plain (unweighted) mean over the ``B`` pairs of the
batch (the pairs' ``weight`` enters the loss only, in :func:`reduce_loss`), log-probs
in nats; under :func:`combined_loss` with several terms each name gets the prefix ``"<loss>/"``.

    rewards/chosen           β(lw − rw), in β·nats per sequence (dpo, ipo, unidpo, madpo,
                             adadpo; adadpo with use_ref=False: β·lw); simpo: β·aw, in β·nats
                             per token
    rewards/rejected         the same on the rejected response: β(ll − rl), β·ll, or β·al
    rewards/margins          chosen reward − rejected reward, pair by pair (same unit)
    rewards/accuracies       fraction of pairs whose chosen reward > rejected reward
    unidpo/w_qual_mean       σ(η(S_w − S_l)), a weight in (0, 1)
    unidpo/w_perf_mean       σ(τ_ref − β(aw − al))^γ, a weight in (0, 1)
    unidpo/cnll_active_frac  fraction of pairs with arw > aw and S_w ≥ τ_good
    madpo/weight_mean        MADPO weight w, > 0 (1 leaves the DPO term unchanged)
    madpo/weight_min         smallest w in the batch
    madpo/weight_max         largest w in the batch
    madpo/amplified_frac     fraction of pairs with w > 1
    adadpo/c_w_mean          chosen coefficient c_w in (0, 2); c_l = 2 − c_w
    nll/chosen               −lw/Lw, in nats per token (combined_loss with nll_weight ≠ 0)
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from prefsmith.training.loss_parts import (
    adadpo_coefficients,
    log_ratios,
    madpo_weight,
    per_token_logps,
    required,
    reward_metrics,
    sigmoid_loss,
    unidpo_w_qual,
)
from prefsmith.training.pair_batch import LossOutput, Metrics, PairBatch


class LossFn(Protocol):
    """A registered loss: ``(batch, **hyperparameters) -> (per_pair_loss (B,), metrics)``."""

    def __call__(self, batch: PairBatch, /, *args: Any, **hparams: Any) -> LossOutput: ...


def dpo(batch: PairBatch, *, beta: float = 0.1, label_smoothing: float = 0.0) -> LossOutput:
    """DPO: "Direct Preference Optimization: Your Language Model is Secretly a Reward Model".

    Rafailov et al. 2023, arXiv:2305.18290; ``label_smoothing`` is conservative DPO (cDPO).

        z = β[(lw − rw) − (ll − rl)]
        ℓ = −(1 − ε) log σ(z) − ε log σ(−z)

    Args:
        batch: needs ``ref_chosen_logps`` and ``ref_rejected_logps``; all fields ``(B,)``.
        beta: β, strength of the implicit KL penalty.
        label_smoothing: ε, assumed probability that a pair's label is flipped; 0 is plain DPO.

    Returns:
        per-pair loss ``(B,)`` and the ``rewards/*`` metrics.
    """
    chosen, rejected = log_ratios(batch, loss="dpo")  # (B,), (B,)
    loss = sigmoid_loss(beta * (chosen - rejected), label_smoothing=label_smoothing)  # (B,)
    return loss, reward_metrics(beta * chosen, beta * rejected)


def ipo(batch: PairBatch, *, beta: float = 0.1, length_normalize: bool = True) -> LossOutput:
    """IPO: "A General Theoretical Paradigm to Understand Learning from Human Preferences".

    Azar et al. 2023, arXiv:2310.12036. The default is TRL's length-normalized form:

        h = (lw − rw)/Lw − (ll − rl)/Ll     (length_normalize=False: h = (lw − rw) − (ll − rl))
        ℓ = (h − 1/(2β))²

    Args:
        batch: needs ``ref_chosen_logps`` and ``ref_rejected_logps``; all fields ``(B,)``.
        beta: β (the paper's τ): the target log-ratio margin is ``1/(2β)``.
        length_normalize: divide each log-ratio by its token count (TRL); False is the paper's
            summed form.

    Returns:
        per-pair loss ``(B,)`` and the ``rewards/*`` metrics.
    """
    chosen, rejected = log_ratios(batch, loss="ipo")  # (B,), (B,)
    if length_normalize:
        h = chosen / batch.chosen_tokens - rejected / batch.rejected_tokens  # (B,)
    else:
        h = chosen - rejected  # (B,)
    loss = (h - 1.0 / (2.0 * beta)) ** 2  # (B,)
    return loss, reward_metrics(beta * chosen, beta * rejected)


def simpo(batch: PairBatch, *, beta: float = 2.0, gamma_beta_ratio: float = 0.5) -> LossOutput:
    """SimPO: "SimPO: Simple Preference Optimization with a Reference-Free Reward".

    Meng et al. 2024, arXiv:2405.14734 (code: princeton-nlp/SimPO). Reference-free:

        ℓ = −log σ(β·aw − β·al − γ),   γ = β · gamma_beta_ratio

    Args:
        batch: reference and score fields are ignored; all fields ``(B,)``.
        beta: β, scale of the per-token average log-prob reward.
        gamma_beta_ratio: γ/β, the target reward margin in per-token nats.

    Returns:
        per-pair loss ``(B,)`` and the ``rewards/*`` metrics on ``β·aw``, ``β·al``.
    """
    avg_chosen, avg_rejected = per_token_logps(batch)  # (B,), (B,)
    chosen, rejected = beta * avg_chosen, beta * avg_rejected  # (B,), (B,)
    loss = -F.logsigmoid(chosen - rejected - beta * gamma_beta_ratio)  # (B,)
    return loss, reward_metrics(chosen, rejected)


def unidpo(
    batch: PairBatch,
    *,
    beta: float = 2.0,
    eta: float = 0.7,
    tau_ref: float = 1.0,
    gamma: float = 3.0,
    lam: float = 0.001,
    tau_good: float = 3.2,
    detach_w_perf: bool = False,
) -> LossOutput:
    """Uni-DPO: "Uni-DPO: A Unified Paradigm for Dynamic Preference Optimization of LLMs".

    Peng et al., ICLR 2026, arXiv:2506.10054 (code: pspdada/Uni-DPO). All log-probs per token:

        m      = aw − al                          (policy-only margin)
        Δ      = β[(aw − arw) − (al − arl)]
        w_qual = sg(σ(η(S_w − S_l)))
        w_perf = [1 − σ(β·m − τ_ref)]^γ           (not detached, as in the official code)
        𝟙      = [arw > aw] · [S_w ≥ τ_good]      (calibrated NLL switch)
        ℓ      = −w_qual · w_perf · log σ(Δ) − λ · 𝟙 · aw

    η and τ_good live on the score scale: with raw ArmoRM scores (≈0.05–0.2) w_qual ≈ 0.5
    and the c-NLL never fires, which is why scores are normalized upstream. Math configs in
    the paper use ``tau_ref=2.0, lam=0.2, tau_good=8.0``.

    Args:
        batch: needs the reference fields and both scores; all fields ``(B,)``.
        beta: β. eta: η. tau_ref: τ_ref. gamma: γ (focal exponent). lam: λ (c-NLL weight).
        tau_good: τ_good, the chosen score above which the c-NLL may fire.
        detach_w_perf: stop the gradient through w_perf (the official code lets it flow).

    Returns:
        per-pair loss ``(B,)``, the ``rewards/*`` metrics and ``unidpo/*`` weight statistics.
    """
    chosen, rejected = log_ratios(batch, loss="unidpo")  # (B,), (B,)
    score_chosen, score_rejected = required(batch, loss="unidpo", kind="scores")
    avg_chosen, avg_rejected = per_token_logps(batch)  # (B,), (B,)
    delta = beta * (chosen / batch.chosen_tokens - rejected / batch.rejected_tokens)  # (B,)
    w_qual = unidpo_w_qual(score_chosen, score_rejected, eta=eta)  # (B,)
    # 1 − σ(x) = σ(−x), which keeps precision when σ(x) is close to 1.
    w_perf = torch.sigmoid(tau_ref - beta * (avg_chosen - avg_rejected)) ** gamma  # (B,)
    if detach_w_perf:
        w_perf = w_perf.detach()
    # arw > aw  <=>  rw > lw, as both sides share the positive token count Lw.
    active = (chosen < 0) & (score_chosen >= tau_good)  # (B,) bool
    cnll = lam * active.to(avg_chosen.dtype) * avg_chosen  # (B,)
    loss = -w_qual * w_perf * F.logsigmoid(delta) - cnll  # (B,)
    metrics = reward_metrics(beta * chosen, beta * rejected)
    metrics["unidpo/w_qual_mean"] = w_qual.mean()
    metrics["unidpo/w_perf_mean"] = w_perf.detach().mean()
    metrics["unidpo/cnll_active_frac"] = active.to(avg_chosen.dtype).mean()
    return loss, metrics


def madpo(
    batch: PairBatch,
    *,
    beta: float = 0.1,
    c_max: float = 2.0,
    c_min: float = 0.5,
    lam: float = 1.0,
    tau: float = math.log(999.0),
) -> LossOutput:
    """MADPO: "Margin Adaptive DPO: Leveraging Reward Model for Granular Control in
    Preference Optimization", Rho 2025, arXiv:2510.05342. Summed log-probs, per-pair weight:

        Δ    = sg(S_w − S_l)                      (reward-model margin)
        c(x) = c_min + (c_max − c_min) / (1 + ((c_max − 1)/(1 − c_min)) · exp(λ(x − τ)))
        w    = σ(c(|Δ|)·Δ) / σ(Δ)  if Δ > −τ,  else 1
        ℓ    = w · (−log σ(β[(lw − rw) − (ll − rl)]))

    w = 1 at Δ = 0 and |Δ| = τ; w > 1 for 0 < Δ < τ (hard, consistent pairs amplified);
    w < 1 for Δ > τ and −τ < Δ < 0.

    Args:
        batch: needs the reference fields and both scores; all fields ``(B,)``.
        beta: β of the DPO term.
        c_max, c_min: bounds of the margin scale c; c_min < 1 < c_max.
        lam: λ, steepness of c around τ (configs accept the old spelling ``lmbda`` until
            prefsmith 0.3.0).
        tau: τ, the margin where c crosses 1 (default ln 999 ≈ 6.9068).

    Returns:
        per-pair loss ``(B,)``, the ``rewards/*`` metrics and ``madpo/*`` weight statistics.
    """
    chosen, rejected = log_ratios(batch, loss="madpo")  # (B,), (B,)
    score_chosen, score_rejected = required(batch, loss="madpo", kind="scores")
    margin = (score_chosen - score_rejected).detach()  # (B,) Δ
    weight = madpo_weight(margin, c_max=c_max, c_min=c_min, lam=lam, tau=tau)  # (B,)
    loss = -weight * F.logsigmoid(beta * (chosen - rejected))  # (B,)
    metrics = reward_metrics(beta * chosen, beta * rejected)
    metrics["madpo/weight_mean"] = weight.mean()
    metrics["madpo/weight_min"] = weight.min()
    metrics["madpo/weight_max"] = weight.max()
    metrics["madpo/amplified_frac"] = (weight > 1).to(weight.dtype).mean()
    return loss, metrics


def adadpo(
    batch: PairBatch,
    *,
    beta: float = 0.1,
    per_token: bool = True,
    clip: float = 10.0,
    use_ref: bool = True,
) -> LossOutput:
    """AdaDPO: "AdaDPO: Self-Adaptive Direct Preference Optimization with Balanced Gradient
    Updates", Chen et al. 2026, arXiv:2605.28440.

    The paper's equations were not available to us: this form is DERIVED from its stated
    principle, not copied from it. DPO pushes the rejected probability harder than it lifts
    the chosen one (``|∂ℓ/∂π_l| / |∂ℓ/∂π_w| = π_w/π_l``); stop-gradient coefficients with
    ``c_w/c_l = π_w/π_l`` on the two log-ratio terms balance the two gradients:

        d   = clip(aw − al, −log C, log C)      (per_token=False: d = lw − ll, unclipped)
        c_w = sg(2σ(d)),  c_l = sg(2σ(−d))      (c_w + c_l = 2; c_w = c_l = 1 when d = 0)
        z   = β[c_w·(lw − rw) − c_l·(ll − rl)]  (use_ref=False: rw = rl = 0)
        ℓ   = −log σ(z)

    Args:
        batch: needs the reference fields unless ``use_ref=False``; all fields ``(B,)``.
        beta: β, as in DPO.
        per_token: balance per-token (geometric-mean) probabilities, clipped; False balances
            the sequence probabilities exactly.
        clip: C > 1, bound on the per-token probability ratio ``c_w/c_l``.
        use_ref: keep the reference log-ratios; False makes the loss reference-free.

    Returns:
        per-pair loss ``(B,)``, the ``rewards/*`` metrics and ``adadpo/c_w_mean``.
    """
    if use_ref:
        chosen, rejected = log_ratios(batch, loss="adadpo")  # (B,), (B,)
    else:
        chosen, rejected = batch.policy_chosen_logps, batch.policy_rejected_logps  # (B,), (B,)
    if per_token:
        avg_chosen, avg_rejected = per_token_logps(batch)  # (B,), (B,)
        c_w, c_l = adadpo_coefficients(avg_chosen - avg_rejected, clip=clip)  # (B,), (B,)
    else:
        log_ratio = batch.policy_chosen_logps - batch.policy_rejected_logps  # (B,) lw − ll
        c_w, c_l = adadpo_coefficients(log_ratio, clip=None)  # (B,), (B,)
    loss = -F.logsigmoid(beta * (c_w * chosen - c_l * rejected))  # (B,)
    metrics = reward_metrics(beta * chosen, beta * rejected)
    metrics["adadpo/c_w_mean"] = c_w.mean()
    return loss, metrics


LOSSES: dict[str, LossFn] = {
    "dpo": dpo,
    "ipo": ipo,
    "simpo": simpo,
    "unidpo": unidpo,
    "madpo": madpo,
    "adadpo": adadpo,
}
_REFERENCE_FREE = frozenset({"simpo"})
_REFERENCE_SWITCH = {"adadpo": "use_ref"}  # a boolean hyperparameter that drops the reference
_USES_SCORES = frozenset({"unidpo", "madpo"})


def _check_name(name: str) -> LossFn:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; registered losses: {', '.join(LOSSES)}")
    return LOSSES[name]


def needs_reference(name: str, **hparams: Any) -> bool:
    """Whether loss ``name`` with these hyperparameters reads the reference log-probs."""
    loss_fn = _check_name(name)
    if name in _REFERENCE_FREE:
        return False
    switch = _REFERENCE_SWITCH.get(name)
    if switch is None:
        return True
    default = inspect.signature(loss_fn).parameters[switch].default
    return bool(hparams.get(switch, default))


def needs_scores(name: str) -> bool:
    """Whether loss ``name`` reads ``score_chosen`` / ``score_rejected``."""
    _check_name(name)
    return name in _USES_SCORES


def reduce_loss(per_pair: Tensor, *, weights: Tensor | None = None) -> Tensor:
    """Average per-pair losses into the scalar to minimize: the one reduction in prefsmith.

    With ``weights`` (shape ``(B,)``, non-negative: the pairs table's ``weight`` column) the
    result is the weighted mean ``Σ_i w_i·ℓ_i / Σ_i w_i`` over the pairs of this batch: a weight
    sets its pair's share of the batch, the weights' overall scale cancels, all-ones weights give
    the plain mean, a weight-0 pair contributes nothing (loss and gradient equal those of the
    batch without it) and a weight-2 pair counts as two copies of it. A batch whose weights are
    all zero gives 0 and no gradient (never 0/0); a table whose weights are all zero is refused
    before training (prefsmith.schemas.weights). Weights are cast to the loss dtype and used as
    given (one that carries gradient passes it on). The mean is per batch, so with gradient
    accumulation each micro-batch is normalized by its own weight sum. Values are not checked
    here (that would sync the device): the pairs are checked when they are read.

    Args:
        per_pair: ``(B,)`` losses from a registered loss or :func:`combined_loss`.
        weights: optional ``(B,)`` per-pair weights; ``None`` is the plain mean.

    Returns:
        0-d tensor.
    """
    if weights is None:
        return per_pair.mean()
    if weights.shape != per_pair.shape:
        raise ValueError(
            f"weights has shape {tuple(weights.shape)} but the per-pair loss has shape "
            f"{tuple(per_pair.shape)}; pass one weight per pair"
        )
    weights = weights.to(per_pair.dtype)  # (B,)
    total = weights.sum().clamp_min(torch.finfo(per_pair.dtype).tiny)  # 0-d, > 0
    return (weights * per_pair).sum() / total


def combined_loss(
    batch: PairBatch,
    *,
    terms: list[tuple[str, float, dict[str, Any]]],
    nll_weight: float = 0.0,
) -> LossOutput:
    """Weighted sum of registered losses plus an optional NLL term on the chosen response.

        ℓ = Σ_k weight_k · LOSSES[name_k](batch, **hparams_k) + nll_weight · (−lw / Lw)

    The NLL term is the per-token mean negative log-likelihood of the chosen completion.
    Metrics keep their names for a single term and get the prefix ``"<name>/"`` for several;
    the NLL term adds ``nll/chosen``.

    Args:
        batch: the pairs; the fields each term needs must be set. All fields ``(B,)``.
        terms: ``(name, weight, hyperparameters)`` per registered loss, each name at most once.
        nll_weight: weight of the chosen-response NLL; 0 leaves it out.

    Returns:
        per-pair loss ``(B,)`` and the merged metrics.
    """
    names = [name for name, _, _ in terms]
    for name in names:
        _check_name(name)
    if len(set(names)) != len(names):
        raise ValueError(f"combined_loss terms repeat a loss name: {names}; list each once")
    if not terms and nll_weight == 0.0:
        raise ValueError("combined_loss needs at least one term or a non-zero nll_weight")
    total = torch.zeros_like(batch.policy_chosen_logps)  # (B,)
    metrics: Metrics = {}
    for name, weight, hparams in terms:
        per_pair, term_metrics = LOSSES[name](batch, **hparams)  # (B,)
        total = total + weight * per_pair  # (B,)
        prefix = f"{name}/" if len(terms) > 1 else ""
        metrics.update({prefix + key: value for key, value in term_metrics.items()})
    if nll_weight != 0.0:
        nll = -batch.policy_chosen_logps / batch.chosen_tokens  # (B,) nats per token
        total = total + nll_weight * nll  # (B,)
        metrics["nll/chosen"] = nll.detach().mean()
    return total, metrics
