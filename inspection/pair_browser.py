"""The pair browser of the inspect report: the pairs themselves, filterable, sortable, paged,
under two interactive charts whose points link to their rows (prefsmith.inspection.pair_charts).

A distribution says a dataset is skewed; only the texts say why. The browser embeds the pairs as
one JSON array (`<script type="application/json" id="pair-data">`) and a few dozen lines of plain
JavaScript render one page of rows at a time, so the page stays responsive at 100k pairs: the DOM
holds `PAGE_ROWS` rows whatever the table's size. What is embedded is bounded so the file stays
openable: at most `MAX_ROWS` pairs (a seeded sample that always keeps the margin extremes, and the
page says how many it shows) and each text cut at `TEXT_CHARS` characters (the full texts are in
the pairs table, found by `pair_id`).

Each row carries the weights the configured loss parameters give its margin (Uni-DPO's w_qual,
MADPO's weight, as `inspection.weights.preview_weights` computes them for the charts), and the
"examples" line links the pairs at the margin's minimum, quartiles and maximum.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from prefsmith.inspection.columns import word_counts
from prefsmith.inspection.pair_charts import chart_divs, sampled
from prefsmith.inspection.weights import preview_weights
from prefsmith.schemas.io import shard_files
from prefsmith.schemas.losses import MADPOParams, UniDPOParams

MAX_ROWS = 20_000  # ~ 20k × 3 texts × TEXT_CHARS: a page of a few MB that a browser opens at once
TEXT_CHARS = 280  # enough to recognise a response; the table file holds the rest
PAGE_ROWS = 25
SEED = 0
COLUMNS = (
    "pair_id", "prompt", "chosen", "rejected", "score_chosen", "score_rejected",
    "margin", "w_qual", "madpo_weight", "len_chosen", "len_rejected",
)  # fmt: skip
EXAMPLE_QUANTILES = {"min": 0.0, "q25": 0.25, "median": 0.5, "q75": 0.75, "max": 1.0}


def _last_user_turn(messages: pl.Expr) -> pl.Expr:
    user = messages.list.eval(
        pl.element().filter(pl.element().struct.field("role") == "user").struct.field("content")
    )
    return user.list.last().fill_null("")


def browser_rows(
    pairs: str | Path,
    *,
    scale: float = 1.0,
    unidpo: UniDPOParams | None = None,
    madpo: MADPOParams | None = None,
) -> tuple[pl.DataFrame, int]:
    """(the rows the page embeds, the table's pair count); texts cut, weights at the params."""
    files = shard_files(pairs) if Path(pairs).is_dir() else [Path(pairs)]
    frame = pl.scan_parquet(files).select(
        "pair_id", "messages", "chosen", "rejected", "score_chosen", "score_rejected", "margin"
    )
    frame = frame.collect()
    total = frame.height
    frame = sampled(frame, limit=MAX_ROWS, seed=SEED)
    weights = preview_weights(
        scale * frame["margin"].fill_null(np.nan).to_numpy(),
        unidpo=unidpo or UniDPOParams(),
        madpo=madpo or MADPOParams(),
    )
    rows = frame.with_columns(
        prompt=_last_user_turn(pl.col("messages")),
        len_chosen=pl.Series(word_counts(frame["chosen"])),
        len_rejected=pl.Series(word_counts(frame["rejected"])),
        w_qual=pl.Series(weights["w_qual"]),
        madpo_weight=pl.Series(weights["madpo_weight"]),
    ).with_columns(pl.col("prompt", "chosen", "rejected").str.slice(0, TEXT_CHARS))
    return rows.select(COLUMNS), total


def example_pairs(rows: pl.DataFrame) -> dict[str, str]:
    """pair_id of the pair at each margin quantile (nearest rank) among the embedded rows."""
    finite = rows.filter(pl.col("margin").is_not_null() & pl.col("margin").is_finite())
    if finite.height == 0:
        return {}
    ordered = finite.sort("margin")
    last = ordered.height - 1
    return {
        label: ordered["pair_id"][int(round(q * last))] for label, q in EXAMPLE_QUANTILES.items()
    }


def _json_for_html(value: object) -> str:
    """JSON safe inside a <script> element: no `</` can close it early."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False).replace("</", "<\\/")


def _rows_json(rows: pl.DataFrame) -> str:
    def cell(x):  # JSON has no NaN: a missing score or weight is null
        if isinstance(x, float):
            return round(x, 6) if np.isfinite(x) else None
        return x

    data = {
        "columns": list(rows.columns),
        "rows": [[cell(x) for x in row] for row in rows.iter_rows()],
    }
    return _json_for_html(data)


def browser_html(rows: pl.DataFrame, *, total: int) -> str:
    """The browser section: data, controls, an empty table the script fills page by page."""
    examples = example_pairs(rows)
    links = " · ".join(
        f"<button type='button' class='example' data-pair='{pid}'>{label}</button>"
        for label, pid in examples.items()
    )
    shown = f"{rows.height:,} of {total:,} pairs" + (
        " (a seeded sample with the margin extremes)" if rows.height < total else ""
    )
    head = "".join(f"<th data-key='{c}'>{c}</th>" for c in COLUMNS)
    return (
        "<section id='pair-browser'><h2>Pairs</h2>"
        f"<p class='meta'>{shown}; texts cut at {TEXT_CHARS} characters. Examples by margin: "
        f"{links}</p>"
        f"{chart_divs(rows)}"
        "<p><input id='pair-filter' type='search' size='40' "
        "placeholder='filter: text or pair_id'> "
        "margin ≥ <input id='pair-min-margin' type='number' step='any' size='8'> "
        "<button id='pair-prev'>‹ prev</button> <span id='pair-count'></span> "
        "<button id='pair-next'>next ›</button></p>"
        "<style>#pair-browser .scroll{overflow-x:auto}#pair-table td{max-width:320px;text-align:left;"
        "vertical-align:top;white-space:pre-wrap}#pair-table th{cursor:pointer}</style>"
        f"<div class='scroll'><table id='pair-table'><thead><tr>{head}</tr></thead>"
        "<tbody></tbody></table></div>"
        f"<script type='application/json' id='pair-data'>{_rows_json(rows)}</script>"
        f"<script>{BROWSER_JS.replace('__PAGE_ROWS__', str(PAGE_ROWS))}</script></section>"
    )


BROWSER_JS = """
(function () {
  var data = JSON.parse(document.getElementById('pair-data').textContent);
  var cols = data.columns, all = data.rows, view = all, page = 0, sortKey = null, sortDir = 1;
  var text = ['pair_id', 'prompt', 'chosen', 'rejected'].map(function (c) { return cols.indexOf(c); });
  var marginAt = cols.indexOf('margin'), size = __PAGE_ROWS__;
  var body = document.querySelector('#pair-table tbody');
  function fmt(v) { return v === null ? '' : (typeof v === 'number' ? String(+v.toFixed(4)) : v); }
  function apply() {
    var needle = document.getElementById('pair-filter').value.toLowerCase();
    var floor = parseFloat(document.getElementById('pair-min-margin').value);
    view = all.filter(function (r) {
      if (!isNaN(floor) && !(r[marginAt] >= floor)) return false;
      return !needle || text.some(function (i) { return String(r[i]).toLowerCase().indexOf(needle) >= 0; });
    });
    if (sortKey !== null) {
      var i = cols.indexOf(sortKey);
      view = view.slice().sort(function (a, b) {
        var x = a[i], y = b[i];
        if (x === y) return 0; if (x === null) return 1; if (y === null) return -1;
        return (x < y ? -1 : 1) * sortDir;
      });
    }
    page = 0; draw();
  }
  function draw() {
    var start = page * size, rows = view.slice(start, start + size);
    body.innerHTML = '';
    rows.forEach(function (r) {
      var tr = document.createElement('tr'); tr.setAttribute('data-pair', r[0]);
      r.forEach(function (v) { var td = document.createElement('td'); td.textContent = fmt(v); tr.appendChild(td); });
      body.appendChild(tr);
    });
    document.getElementById('pair-count').textContent = view.length ?
      'rows ' + (start + 1) + '–' + (start + rows.length) + ' of ' + view.length : 'no rows match';
    document.getElementById('pair-table').setAttribute('data-matching', String(view.length));
  }
  document.getElementById('pair-filter').addEventListener('input', apply);
  document.getElementById('pair-min-margin').addEventListener('input', apply);
  document.getElementById('pair-prev').addEventListener('click', function () { if (page > 0) { page--; draw(); } });
  document.getElementById('pair-next').addEventListener('click', function () {
    if ((page + 1) * size < view.length) { page++; draw(); } });
  document.querySelectorAll('#pair-table th').forEach(function (th) {
    th.addEventListener('click', function () {
      var key = th.getAttribute('data-key'); sortDir = sortKey === key ? -sortDir : 1; sortKey = key; apply(); });
  });
  document.querySelectorAll('button.example').forEach(function (a) {
    a.addEventListener('click', function (e) {
      document.getElementById('pair-filter').value = a.getAttribute('data-pair'); apply(); });
  });
  var scatter = document.getElementById('pair-scatter');
  if (scatter && scatter.on) scatter.on('plotly_click', function (event) {
    document.getElementById('pair-filter').value = event.points[0].customdata; apply(); });
  apply();
  window.prefsmithReady = true;
})();
"""
