"""The evaluation report as one self-contained HTML page (`eval_report.html`).

Charts come from `prefsmith.inspection.charts` (inline SVG, `<svg class="chart" data-points=N>`,
data marks of class bar / dot), with its console-error hook and style, so a headless browser
test reads both reports the same way. Nothing is fetched: no scripts, fonts or images from outside.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from prefsmith.evaluation.length_adjusted import LENGTH_ADJUSTED_NOTE
from prefsmith.inspection.charts import (  # chart helpers shared with `prefsmith inspect`
    BOTTOM,
    ERROR_HOOK,
    HEIGHT,
    LEFT,
    RIGHT,
    STYLE,
    TOP,
    WIDTH,
    Plot,
    escape,
    histogram_svg,
    html_table,
    scatter_svg,
    title_text,
    wrap_svg,
)

EXTRA_STYLE = """<style>
.headline{font-size:18px;background:#fff;border:1px solid #e5e7eb;border-left:6px solid #2563eb;border-radius:6px;padding:10px 16px;margin:14px 0}
.headline.good{border-left-color:#059669}.headline.bad{border-left-color:#dc2626}.note{color:#4b5563;font-size:12px;max-width:900px}
.ex{background:#fff;border:1px solid #e5e7eb;border-radius:6px;padding:8px 12px;margin:10px 0}
.ex .side{display:grid;grid-template-columns:1fr 1fr;gap:12px}.ex pre{white-space:pre-wrap;margin:4px 0;font:13px/1.4 ui-monospace,monospace}
.cat{font-size:12px;fill:#111827;text-anchor:middle}.value{font-size:12px;fill:#111827;text-anchor:middle;font-weight:600}
</style>"""


def _histogram(
    series: Mapping[str, np.ndarray], *, title: str, xlabel: str, unit: str = "responses"
) -> str:
    """histogram_svg with the y label naming what is counted (it says pairs by default)."""
    return histogram_svg(series, title=title, xlabel=xlabel).replace(
        ">fraction of pairs<", f">fraction of {unit}<"
    )


OUTCOME_COLORS = ("#059669", "#9ca3af", "#dc2626")  # tuned wins, tie, base wins


def outcome_bars_svg(
    counts: Mapping[str, int], *, title: str, colors: Sequence[str] = OUTCOME_COLORS
) -> str:
    """One bar per category (win / tie / loss), its count above it; N is the number of prompts."""
    names, values = list(counts), np.array(list(counts.values()), dtype=np.float64)
    plot = Plot((0.0, float(len(names))), (0.0, max(float(values.max(initial=0)) * 1.18, 1.0)))
    bottom, right = HEIGHT - BOTTOM, WIDTH - RIGHT
    parts = [title_text(title), *plot.y_grid()]
    parts.append(
        f'<rect class="axes" x="{LEFT}" y="{TOP}" width="{right - LEFT}" height="{bottom - TOP}"/>'
        f'<text class="label" transform="translate(14 {(TOP + bottom) / 2}) rotate(-90)">prompts</text>'
    )
    for i, (name, value) in enumerate(zip(names, values, strict=True)):
        x0, x1, y = plot.x(i + 0.2), plot.x(i + 0.8), plot.y(value)
        parts.append(
            f'<rect class="bar" x="{x0:.1f}" y="{y:.1f}" width="{x1 - x0:.1f}" height="{bottom - y:.1f}" '
            f'fill="{colors[i % len(colors)]}" fill-opacity="0.75"><title>{escape(name)}: {int(value)}</title></rect>'
            f'<text class="value" x="{(x0 + x1) / 2:.1f}" y="{y - 5:.1f}">{int(value)}</text>'
            f'<text class="cat" x="{(x0 + x1) / 2:.1f}" y="{bottom + 16}">{escape(name)}</text>'
        )
    return wrap_svg(parts, points=int(values.sum()), title=title)


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
        f"{_length_adjusted(report['length_adjusted_win_rate'])}</p>"
    )


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
) -> list[str]:
    """Rewards and lengths per response, mean reward per prompt, and the outcome counts."""
    wr = report["win_rate"]
    return [
        _histogram(
            {"tuned": tuned["score"].to_numpy(), "base": base["score"].to_numpy()},
            title="Reward per response, tuned vs base",
            xlabel="reward",
        ),
        _histogram(
            {"tuned": tuned["tokens"].to_numpy(), "base": base["tokens"].to_numpy()},
            title="Response length, tuned vs base",
            xlabel="completion tokens",
        ),
        scatter_svg(
            paired["score_base"].to_numpy(),
            paired["score"].to_numpy(),
            diagonal=True,
            title="Mean reward per prompt",
            xlabel="base",
            ylabel="tuned (above the line: tuned wins)",
        ),
        outcome_bars_svg(
            {"tuned wins": wr["wins"], "tie": wr["ties"], "base wins": wr["losses"]},
            title="Outcome per held-out prompt",
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
) -> list[str]:
    """SVG charts: rewards and lengths (per response), per-prompt scatter, outcomes, KL, margins."""
    out = _policy_charts(tuned, base, paired, report)
    if kl_samples is not None and kl_samples.height:
        out.append(
            _histogram(
                {"k1": kl_samples["kl_seq"].to_numpy()},
                unit="samples",
                title="log π(y) − log π_ref(y) per tuned sample",
                xlabel="nats per sequence",
            )
        )
    if margins is not None and margins.height:
        out.append(
            _histogram(
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
    """The whole page as one string; `tuned`/`base` per response (score, tokens), `paired` per prompt."""
    meta = " · ".join(f"{k}: {v}" for k, v in (sources or {}).items())
    figures = "".join(
        f"<figure>{c}</figure>"
        for c in charts(tuned, base, paired, report, kl_samples=kl_samples, margins=margins)
    )
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return "".join(
        [
            "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>prefsmith eval — tuned vs base</title>",
            ERROR_HOOK,
            STYLE,
            EXTRA_STYLE,
            f"</head><body><header><h1>Tuned vs base</h1><p class='meta'>{escape(meta)}</p></header>",
            _headline(report),
            f"<section><h2>Summary</h2>{summary_tables(report)}<p class='note'>{escape(LENGTH_ADJUSTED_NOTE)}</p></section>",
            f"<section><h2>Charts</h2><div class='grid2'>{figures}</div></section>",
            examples_section(report.get("examples")),
            f"<footer class='meta'><p>prefsmith eval · {stamp}</p></footer>",
            "<pre id='console-errors' data-count='0'></pre></body></html>",
        ]
    )
