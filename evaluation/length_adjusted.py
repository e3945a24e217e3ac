"""Length-adjusted win rate: the tuned policy's win rate at equal response length, with a 95% interval.

A reward model that prefers longer answers makes a policy that learned to write longer look
better than it is. This regresses the per-prompt outcome on the length difference and reads the
win rate off at zero difference. It is *not* AlpacaEval's length-controlled win rate (that one is
a GLM of a judge's preference on the length difference, the instruction and the model identity,
fitted across many models); it is the two-policy analogue, so it is named "length-adjusted".

| quantity | definition                                                                      |
|----------|---------------------------------------------------------------------------------|
| y_i      | outcome of prompt i: 1 tuned wins, 0 base wins, 0.5 tie (a valid binomial mean) |
| z_i      | (tuned − base response tokens) / sd of that difference over the prompts         |
| model    | statsmodels GLM, Binomial family, logit link: logit P(win) = a + b·z            |
| rate     | σ(a), the predicted win rate at z = 0 (equal length)                            |
| interval | Wald 95% interval of the linear predictor at z = 0 (a ± 1.96·se(a), the delta  |
|          | method on the link scale, statsmodels' `get_prediction`), mapped through σ       |

The binomial scale is fixed at 1 (no overdispersion estimate); ties as 0.5 make that slightly
conservative. When every length difference is the same (sd 0) the model is intercept-only. When
the outcomes are all one value or lengths separate wins from losses, the maximum-likelihood
estimate does not exist: rate, low and high are None and `status` says why.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np

METHOD = (
    "binomial GLM (statsmodels, logit link) of the per-prompt outcome on the standardized "
    "length difference; rate = prediction at equal length; 95% Wald interval on the logit scale"
)

LENGTH_ADJUSTED_NOTE = (
    "Length-adjusted win rate: a binomial GLM (logit link, statsmodels) of the per-prompt outcome "
    "(ties 0.5) on the standardized length difference (tuned − base response tokens); reported is "
    "its prediction at equal length, σ(intercept), with a 95% Wald interval on the logit scale. "
    "A two-policy analogue of AlpacaEval's length-controlled win rate, not that method."
)


@dataclass(frozen=True)
class LengthAdjustedWinRate:
    rate: float | None  # σ(a): predicted win rate at zero length difference
    low: float | None  # 95% Wald interval on the logit scale, mapped through σ
    high: float | None
    n: int
    length_coef: float | None  # b: change of logit P(win) per sd of the length difference
    length_sd: float  # sd of (tuned − base) response tokens, the unit of z
    status: str  # "ok", or why no estimate exists
    method: str = METHOD

    def as_dict(self) -> dict[str, float | int | str | None]:
        return asdict(self)


def design(length_diff: np.ndarray) -> tuple[np.ndarray, float]:
    """(X, sd): the GLM design [1, z] with z = length_diff / sd, or [1] alone when sd is 0."""
    diff = np.asarray(length_diff, dtype=np.float64)  # (n,)
    sd = float(diff.std())
    if sd == 0.0:
        return np.ones((diff.size, 1)), 0.0  # (n, 1)
    return np.column_stack([np.ones(diff.size), diff / sd]), sd  # (n, 2)


def fit_glm(won: np.ndarray, exog: np.ndarray):
    """statsmodels' binomial GLM (logit) fit, and whether it warned of perfect separation.

    statsmodels is imported here, not at module top: it costs seconds, and every CLI command
    imports the stage registry that imports this module.
    """
    from statsmodels.genmod.families import Binomial
    from statsmodels.genmod.generalized_linear_model import GLM
    from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with np.errstate(over="ignore"):  # exp overflows on the way to a separated fit
            result = GLM(np.asarray(won, dtype=np.float64), exog, family=Binomial()).fit()
    separated = any(issubclass(w.category, PerfectSeparationWarning) for w in caught)
    return result, separated


def _no_estimate(n: int, *, sd: float, status: str) -> LengthAdjustedWinRate:
    return LengthAdjustedWinRate(None, None, None, n, None, sd, status)


def length_adjusted_win_rate(
    won: np.ndarray, *, length_diff: np.ndarray, alpha: float = 0.05
) -> LengthAdjustedWinRate:
    """Win rate at equal length with its (1 − alpha) interval; see the module docstring.

    `won` (n,) holds outcomes 1 / 0.5 / 0, `length_diff` (n,) tuned − base response tokens.
    """
    y = np.asarray(won, dtype=np.float64)  # (n,)
    if y.size == 0:
        raise ValueError("length-adjusted win rate of zero prompts")
    if not np.isfinite(np.asarray(length_diff, dtype=np.float64)).all():
        return _no_estimate(y.size, sd=0.0, status="response lengths missing")
    exog, sd = design(length_diff)
    if np.all(y == y[0]):
        return _no_estimate(y.size, sd=sd, status=f"every outcome is {y[0]:g}")
    result, separated = fit_glm(y, exog)
    if separated or not result.converged:
        reason = "lengths separate wins from losses" if separated else "GLM did not converge"
        return _no_estimate(y.size, sd=sd, status=reason)
    at_equal = np.zeros((1, exog.shape[1]))
    at_equal[0, 0] = 1.0  # intercept only: z = 0
    frame = result.get_prediction(at_equal).summary_frame(alpha=alpha)
    return LengthAdjustedWinRate(
        rate=float(frame["mean"].iloc[0]),
        low=float(frame["mean_ci_lower"].iloc[0]),
        high=float(frame["mean_ci_upper"].iloc[0]),
        n=int(y.size),
        length_coef=float(result.params[1]) if exog.shape[1] == 2 else None,
        length_sd=sd,
        status="ok",
    )
