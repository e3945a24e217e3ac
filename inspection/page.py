"""The page around both HTML reports (inspect, eval): Jinja2 skeletons and small HTML pieces.

`render_page` fills `templates/<name>` (a child of `templates/base.html.j2`: head, console-error
hook, plotly.js, style, header, footer and the `#console-errors` element). Autoescape is on:
plain strings passed to it are escaped, and fragments already built as HTML (tables, charts of
`prefsmith.inspection.figures`) are passed as `Markup`.

Nothing is fetched from outside: the only script source is `plotly.min.js` beside the page
(`figures.write_plotly_js`). `ERROR_HOOK` records script errors and `console.error` calls
into `#console-errors`, so a headless browser test reads them from the DOM.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path

import jinja2
from markupsafe import Markup

from prefsmith.inspection.figures import PLOTLY_JS

TEMPLATES = Path(__file__).resolve().parent / "templates"


def escape(text: object) -> str:
    """`text` as HTML, quotes escaped too (safe inside attribute values)."""
    return html.escape(str(text), quote=True)


def html_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain `<table>`, every header and cell escaped."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@cache
def environment() -> jinja2.Environment:
    """The templates of this package, autoescaped; a missing variable is an error, not ''."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_page(
    name: str,
    *,
    title: str,
    heading: str,
    tool: str,
    sources: Mapping[str, str] | None = None,
    fragments: Mapping[str, object],
) -> str:
    """The page of template `name`: `title`, `heading` and `sources` (shown as "key: value · …")
    are escaped; `fragments` are HTML already (a string or a list of strings each), inserted
    as they are. `tool` names the command in the footer with the time the page was made."""
    safe = {
        key: [Markup(v) for v in value] if isinstance(value, list | tuple) else Markup(value)
        for key, value in fragments.items()
    }
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return (
        environment()
        .get_template(name)
        .render(
            title=title,
            heading=heading,
            meta=" · ".join(f"{k}: {v}" for k, v in (sources or {}).items()),
            footer=f"prefsmith {tool} · {stamp}",
            plotly_js=PLOTLY_JS,
            error_hook=Markup(ERROR_HOOK),
            style=Markup(STYLE),
            **safe,
        )
    )


ERROR_HOOK = """<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push('error: ' + (e.message || e.type)); }, true);
(function () { var original = console.error; console.error = function () {
  window.__errors.push(Array.prototype.map.call(arguments, String).join(' ')); original.apply(console, arguments); }; })();
window.addEventListener('load', function () { var out = document.getElementById('console-errors');
  out.textContent = window.__errors.join('\\n'); out.setAttribute('data-count', String(window.__errors.length)); });
</script>"""

STYLE = """<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans",sans-serif;margin:0 auto;max-width:1120px;padding:20px 28px;color:#111827;background:#f9fafb}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 10px;border-bottom:1px solid #e5e7eb;padding-bottom:4px}
.meta{color:#4b5563;margin:0}.warnings{background:#fffbeb;border:1px solid #f59e0b;border-left:6px solid #f59e0b;padding:10px 16px;margin:16px 0;border-radius:6px}
.warnings.ok{background:#ecfdf5;border-color:#10b981}.warnings h2{border:0;margin:0 0 4px;font-size:16px}.warnings li{margin:3px 0}
table{border-collapse:collapse;margin:8px 0;background:#fff;font-size:13px}th,td{border:1px solid #e5e7eb;padding:3px 8px;text-align:right}
th:first-child,td:first-child,.kv td,.kv th{text-align:left}th{background:#f3f4f6}.grid2{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:14px}
figure{margin:0;background:#fff;border:1px solid #e5e7eb;border-radius:6px;padding:6px}figcaption{color:#4b5563;font-size:12px;padding:0 6px}
div.chart{width:100%;min-height:320px}#console-errors{display:none}
</style>"""
