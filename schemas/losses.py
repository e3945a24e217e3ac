"""The hyperparameters of every registered loss, declared once: default, range and paper symbol.

One params model per loss in `prefsmith.training.losses.LOSSES` (a test holds each model's fields
and defaults equal to its loss function's keyword defaults). A train config's loss term is a
discriminated union on `name`, so the YAML stays

    loss:
      - {name: madpo, weight: 1.0, params: {beta: 0.1, lam: 1.0}}

and a misspelt parameter or an out-of-range value fails when the config is loaded (`prefsmith
validate`, `prefsmith run`, `prefsmith inspect -c`), naming the field, before any model loads.
`prefsmith inspect` previews Uni-DPO's w_qual and MADPO's weights with these same models.
No torch here (schemas/ is imported where only the data stack is installed).
"""

from __future__ import annotations

import math
import warnings
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from prefsmith.schemas.config_base import StrictModel
from prefsmith.schemas.errors import ConfigDeprecation


def _not_a_bool(value: Any) -> Any:
    """YAML `true` is not a number: refuse it before pydantic would read it as 1.0."""
    if isinstance(value, bool):
        raise ValueError("expects a number, not true/false")
    return value


Real = Annotated[float, BeforeValidator(_not_a_bool), Field(allow_inf_nan=False)]
Flag = Annotated[bool, Field(strict=True)]  # true/false only, not 1 or "yes"


class _Params(StrictModel):
    """A loss's hyperparameters: an unknown key is reported with the names the loss knows."""

    @model_validator(mode="wrap")
    @classmethod
    def _name_the_known(cls, data: Any, handler: Any) -> Any:
        try:
            return handler(data)
        except ValidationError as error:
            known = PydanticCustomError(
                "unknown_parameter",
                "unknown parameter (known: {known})",
                {"known": ", ".join(cls.model_fields)},
            )
            details = [
                InitErrorDetails(
                    type=known if item["type"] == "extra_forbidden" else item["type"],
                    loc=item["loc"],
                    input=item["input"],
                    ctx=item.get("ctx", {}),
                )
                for item in error.errors()
            ]
            raise ValidationError.from_exception_data(error.title, details) from None


class DPOParams(_Params):
    """DPO, Rafailov et al. 2023, arXiv:2305.18290; label smoothing is conservative DPO (cDPO)."""

    beta: Real = Field(0.1, gt=0.0, description="β: strength of the implicit KL penalty")
    label_smoothing: Real = Field(
        0.0,
        ge=0.0,
        lt=0.5,
        description="ε: assumed probability that a pair's label is flipped (cDPO); 0 is plain DPO",
    )


class IPOParams(_Params):
    """IPO, Azar et al. 2023, arXiv:2310.12036 (TRL's length-normalized form by default)."""

    beta: Real = Field(
        0.1, gt=0.0, description="β: the paper's τ; the target log-ratio margin is 1/(2β)"
    )
    length_normalize: Flag = Field(
        True, description="divide each log-ratio by its token count (TRL); false: the paper's sum"
    )


class SimPOParams(_Params):
    """SimPO, Meng et al. 2024, arXiv:2405.14734 (princeton-nlp/SimPO); reference-free."""

    beta: Real = Field(2.0, gt=0.0, description="β: scale of the per-token average log-prob reward")
    gamma_beta_ratio: Real = Field(
        0.5, ge=0.0, description="γ/β: the target reward margin γ, in per-token nats over β"
    )


class UniDPOParams(_Params):
    """Uni-DPO, Peng et al., ICLR 2026, arXiv:2506.10054 (pspdada/Uni-DPO): released configs.

    η and τ_good live on the score scale of the (normalized) data; the paper's math configs use
    tau_ref=2.0, lam=0.2, tau_good=8.0.
    """

    beta: Real = Field(2.0, gt=0.0, description="β: scale of the per-token log-ratio margin Δ")
    eta: Real = Field(
        0.7, gt=0.0, description="η: slope of the quality weight w_qual = σ(η(S_w − S_l))"
    )
    tau_ref: Real = Field(
        1.0, description="τ_ref: margin offset of the performance weight σ(τ_ref − β·m)^γ"
    )
    gamma: Real = Field(
        3.0, ge=0.0, description="γ: focal exponent of the performance weight w_perf (0: off)"
    )
    lam: Real = Field(0.001, ge=0.0, description="λ: weight of the calibrated NLL term (c-NLL)")
    tau_good: Real = Field(
        3.2, description="τ_good: chosen score S_w from which the c-NLL may fire (score scale)"
    )
    detach_w_perf: Flag = Field(
        False, description="stop the gradient through w_perf (the official code lets it flow)"
    )


class MADPOParams(_Params):
    """MADPO, Rho 2025, arXiv:2510.05342: c(|Δ|) must cross 1 at |Δ| = τ, so c_min < 1 < c_max.

    `lmbda`, the earlier spelling of λ, is still read, with a ConfigDeprecation warning, until 0.3.0.
    """

    beta: Real = Field(0.1, gt=0.0, description="β: strength of the implicit KL penalty (DPO term)")
    c_max: Real = Field(
        2.0, gt=1.0, description="c_max: largest margin scale c, approached as |Δ| → 0 (> 1)"
    )
    c_min: Real = Field(
        0.5,
        gt=0.0,
        lt=1.0,
        description="c_min: smallest margin scale c, approached as |Δ| → ∞ (in (0, 1))",
    )
    lam: Real = Field(1.0, gt=0.0, description="λ: steepness of c(|Δ|) around τ")
    tau: Real = Field(
        math.log(999.0), gt=0.0, description="τ: the margin |Δ| where c crosses 1 (ln 999 ≈ 6.9068)"
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed_lmbda(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "lmbda" not in data:
            return data
        warnings.warn(
            "madpo params: `lmbda` is deprecated and will be removed in prefsmith 0.3.0; "
            "write `lam` (λ, spelled as in unidpo)",
            ConfigDeprecation,
            stacklevel=2,
        )
        if "lam" in data:
            raise ValueError(
                "λ is given twice: keep `lam` and drop its deprecated spelling `lmbda`"
            )
        renamed = dict(data)
        renamed["lam"] = renamed.pop("lmbda")
        return renamed


class AdaDPOParams(_Params):
    """AdaDPO, Chen et al. 2026, arXiv:2605.28440 (form derived from its stated principle)."""

    beta: Real = Field(0.1, gt=0.0, description="β: strength of the implicit KL penalty")
    per_token: Flag = Field(
        True,
        description="balance per-token (geometric-mean) probabilities, clipped; false: the "
        "sequence probabilities, unclipped",
    )
    clip: Real = Field(
        10.0, gt=1.0, description="C: bound on the per-token probability ratio c_w/c_l (> 1)"
    )
    use_ref: Flag = Field(
        True, description="keep the reference log-ratios; false makes the loss reference-free"
    )


_NAME = "registered loss (prefsmith.training.losses.LOSSES)"
_WEIGHT = "multiplies this term's per-pair loss in the sum"
_PARAMS = "keyword hyperparameters of the loss; unset ones take the defaults shown here"


class DPOTerm(StrictModel):
    name: Literal["dpo"] = Field("dpo", description=_NAME)
    weight: float = Field(1.0, description=_WEIGHT)
    params: DPOParams = Field(default_factory=DPOParams, description=_PARAMS)


class IPOTerm(StrictModel):
    name: Literal["ipo"] = Field("ipo", description=_NAME)
    weight: float = Field(1.0, description=_WEIGHT)
    params: IPOParams = Field(default_factory=IPOParams, description=_PARAMS)


class SimPOTerm(StrictModel):
    name: Literal["simpo"] = Field("simpo", description=_NAME)
    weight: float = Field(1.0, description=_WEIGHT)
    params: SimPOParams = Field(default_factory=SimPOParams, description=_PARAMS)


class UniDPOTerm(StrictModel):
    name: Literal["unidpo"] = Field("unidpo", description=_NAME)
    weight: float = Field(1.0, description=_WEIGHT)
    params: UniDPOParams = Field(default_factory=UniDPOParams, description=_PARAMS)


class MADPOTerm(StrictModel):
    name: Literal["madpo"] = Field("madpo", description=_NAME)
    weight: float = Field(1.0, description=_WEIGHT)
    params: MADPOParams = Field(default_factory=MADPOParams, description=_PARAMS)


class AdaDPOTerm(StrictModel):
    name: Literal["adadpo"] = Field("adadpo", description=_NAME)
    weight: float = Field(1.0, description=_WEIGHT)
    params: AdaDPOParams = Field(default_factory=AdaDPOParams, description=_PARAMS)


LossParams = DPOParams | IPOParams | SimPOParams | UniDPOParams | MADPOParams | AdaDPOParams
LossTerm = Annotated[
    DPOTerm | IPOTerm | SimPOTerm | UniDPOTerm | MADPOTerm | AdaDPOTerm,
    Field(discriminator="name"),
]

# Registry name -> its params model (the keys are prefsmith.training.losses.LOSSES').
PARAMS_BY_LOSS: dict[str, type[LossParams]] = {
    "dpo": DPOParams,
    "ipo": IPOParams,
    "simpo": SimPOParams,
    "unidpo": UniDPOParams,
    "madpo": MADPOParams,
    "adadpo": AdaDPOParams,
}
