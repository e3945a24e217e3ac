"""The evaluation report as one HTML page (`eval_report.html`).

Charts are the plotly figures of `prefsmith.inspection.figures` (`<div class="chart"
data-points=N>`), inside the `eval.html.j2` skeleton of `prefsmith.inspection.page`, so a
headless browser test reads both reports the same way. Nothing is fetched from outside: the
only script is the `plotly.min.js` the caller writes beside the page (`write_plotly_js`).
"""

from __future__ import annotations

from collections.abc import Mapping

import plotly.graph_objects as go
import polars as pl

from prefsmith.evaluation.length_adjusted import LENGTH_ADJUSTED_NOTE
from prefsmith.inspection import figures as fg  # the charts shared with `prefsmith inspect`
from prefsmith.inspection.page import escape, html_table, render_page

OUTCOME_COLORS = ("#059669", "#9ca3af", "#dc2626")  # tuned wins, tie, base wins


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1%}"


def _num(x: float | None, digits: int = 4) -> str:
    return "–" if x is None else f"{x:.{digits}g}"


def _headline(report: Mapping) -> str:
    wr = report["win_rate"]
    verdict = "good" if wr["low"] > 0.5 else "bad" if wr["high"] < 0.5 else ""
    return (
        f"<p class='headline {verdict}'>Tuned beats base on <b>{_pct(wr['rate'])}</b> of {wr['n']} held-out "
        f"prompts (95% CI {_pct(wr['low'])} – {_pct(wr['high'])}; ties count half). "
        f"{_length_adjusted(report['length_adjusted_win_rate'])}</p>" + _judge(report)
    )


def _judge(report: Mapping) -> str:
    """Who judged (and the warning when a training scorer did), then each scorer's win rate."""
    judge, rows = report.get("judge"), report.get("by_scorer") or []
    parts = []
    if judge is not None:
        kind = "a training scorer" if judge["training_scorer"] else "not a training scorer"
        parts.append(f"<p class='note'>Judged by <b>{escape(judge['name'])}</b> ({kind}).</p>")
        if judge["warning"]:
            parts.append(f"<p class='headline bad judge-warning'>{escape(judge['warning'])}</p>")
    if rows:
        cells = [
            [r["scorer"], _pct(r["rate"]), f"{_pct(r['low'])} – {_pct(r['high'])}", r["n"],
             "yes" if r["training_scorer"] else "no"]
            for r in rows
        ]  # fmt: skip
        header = ["scorer", "win rate", "95% CI", "prompts", "built the pairs"]
        parts.append(html_table(header, cells))
    return "".join(parts)


def _length_adjusted(la: Mapping) -> str:
    """The headline's length-adjusted sentence (its estimate and interval, or why it has none)."""
    if la["rate"] is None:
        return f"Length-adjusted: not estimable ({escape(la['status'])})."
    return (
        f"Length-adjusted (at equal response length): <b>{_pct(la['rate'])}</b> "
        f"(95% CI {_pct(la['low'])} – {_pct(la['high'])})."
    )


def summary_tables(report: Mapping) -> str:
    """Policies side by side, then KL, held-out pairs and lm-eval (each 'not computed' if absent)."""
    t, b, wr = report["tuned"], report["base"], report["win_rate"]
    parts = [
        html_table(
            ["policy", "mean reward", "mean tokens", "prompts won"],
            [
                ["tuned", _num(t["mean_reward"]), f"{t['mean_tokens']:.1f}", wr["wins"]],
                ["base", _num(b["mean_reward"]), f"{b['mean_tokens']:.1f}", wr["losses"]],
            ],
        )
    ]
    kl, acc, lm = report["kl"], report["heldout_pairs"], report["lm_eval"]
    rows = [
        [
            "KL(tuned ‖ reference), nats per sequence (k1)",
            "not computed"
            if kl is None
            else f"{_num(kl['kl_seq_mean'])} ± {_num(kl['kl_seq_se'], 2)} (n={kl['n_samples']})",
        ],
        ["KL k3 estimator, nats per sequence", "–" if kl is None else _num(kl["k3_seq_mean"])],
        ["KL per token (token-weighted)", "–" if kl is None else _num(kl["kl_per_token"])],
        [
            "held-out pairs: implicit-reward accuracy",
            "not computed" if acc is None else f"{_pct(acc['accuracy'])} of {acc['n_pairs']} pairs",
        ],
        ["held-out pairs: mean margin (nats)", "–" if acc is None else _num(acc["mean_margin"])],
        ["lm-eval", lm["message"] if lm else "not run"],
    ]
    parts.append(html_table(["measure", "value"], rows).replace("<table>", "<table class='kv'>", 1))
    return "".join(parts)


def _policy_charts(
    tuned: pl.DataFrame, base: pl.DataFrame, paired: pl.DataFrame, report: Mapping
) -> list[go.Figure]:
    """Rewards and lengths per response, mean reward per prompt, and the outcome counts."""
    wr = report["win_rate"]
    return [
        fg.histogram(
            {"tuned": tuned["score"].to_numpy(), "base": base["score"].to_numpy()},
            unit="responses",
            title="Reward per response, tuned vs base",
            xlabel="reward",
        ),
        fg.histogram(
            {"tuned": tuned["tokens"].to_numpy(), "base": base["tokens"].to_numpy()},
            unit="responses",
            title="Response length, tuned vs base",
            xlabel="completion tokens",
        ),
        fg.scatter(
            paired["score_base"].to_numpy(),
            paired["score"].to_numpy(),
            ids=paired["prompt_id"].to_list(),
            id_name="prompt_id",
            diagonal=True,
            title="Mean reward per prompt",
            xlabel="base",
            ylabel="tuned (above the line: tuned wins)",
        ),
        fg.category_bars(
            {"tuned wins": wr["wins"], "tie": wr["ties"], "base wins": wr["losses"]},
            title="Outcome per held-out prompt",
            ylabel="prompts",
            colors=OUTCOME_COLORS,
        ),
    ]


def charts(
    tuned: pl.DataFrame,
    base: pl.DataFrame,
    paired: pl.DataFrame,
    report: Mapping,
    *,
    kl_samples: pl.DataFrame | None = None,
    margins: pl.DataFrame | None = None,
) -> list[go.Figure]:
    """The charts: rewards and lengths (per response), per-prompt scatter, outcomes, KL, margins."""
    out = _policy_charts(tuned, base, paired, report)
    if kl_samples is not None and kl_samples.height:
        out.append(
            fg.histogram(
                {"k1": kl_samples["kl_seq"].to_numpy()},
                unit="samples",
                title="log π(y) − log π_ref(y) per tuned sample",
                xlabel="nats per sequence",
            )
        )
    if margins is not None and margins.height:
        out.append(
            fg.histogram(
                {"margin": margins["margin"].to_numpy()},
                unit="pairs",
                title="Implicit-reward margin per held-out pair",
                xlabel="nats (> 0: ranked as the scorer)",
            )
        )
    return out


EXAMPLE_TITLES = {
    "best_wins": "Largest wins of the tuned policy",
    "worst_losses": "Worst losses",
    "random": "Other prompts (seeded draw)",
}


def _example_card(item: Mapping) -> str:
    prompt = item.get("prompt")
    head = escape(prompt) if prompt is not None else f"prompt {escape(item['prompt_id'])}"
    sides = "".join(
        f"<div><b>{label}</b> · reward {_num(item[f'reward_{side}'])}"
        f"<pre>{escape(item[side] or '')}</pre></div>"
        for side, label in (("tuned", "tuned"), ("base", "base"))
    )
    return (
        f"<div class='ex' data-prompt='{escape(item['prompt_id'])}'><p><b>{head}</b></p>"
        f"<div class='side'>{sides}</div></div>"
    )


def examples_section(examples: Mapping | None) -> str:
    """Side-by-side tuned and base generations (prefsmith.evaluation.examples), by kind."""
    if not examples:
        return ""
    parts = ["<section id='examples'><h2>Examples: tuned vs base on held-out prompts</h2>"]
    for kind, title in EXAMPLE_TITLES.items():
        items = examples.get(kind) or []
        parts.append(f"<h3>{title} ({len(items)})</h3>")
        parts.extend(_example_card(item) for item in items)
    return "".join(parts) + "</section>"


def side_labels(report: dict) -> str:
    """ "Tuned vs base", or what the report's `labels` call the two sides ("Round 2 vs round 1")."""
    labels = report.get("labels") or {"tuned": "tuned", "base": "base"}
    return f"{labels['tuned']} vs {labels['base']}".capitalize()


def render_eval_html(
    report: Mapping,
    *,
    tuned: pl.DataFrame,
    base: pl.DataFrame,
    paired: pl.DataFrame,
    kl_samples: pl.DataFrame | None = None,
    margins: pl.DataFrame | None = None,
    sources: Mapping[str, str] | None = None,
) -> str:
    """The whole page as one string (`eval.html.j2`); `tuned`/`base` per response (score,
    tokens), `paired` per prompt. Its charts need `plotly.min.js` beside it (`write_plotly_js`)."""
    figures = charts(tuned, base, paired, report, kl_samples=kl_samples, margins=margins)
    fragments = {
        "headline": _headline(report),
        "summary": summary_tables(report),
        "note": escape(LENGTH_ADJUSTED_NOTE),
        "charts": [fg.chart_html(f) for f in figures],
        "examples": examples_section(report.get("examples")),
    }
    return render_page(
        "eval.html.j2",
        title=f"prefsmith eval — {side_labels(report).lower()}",
        heading=side_labels(report),
        tool="eval",
        sources=sources,
        fragments=fragments,
    )
