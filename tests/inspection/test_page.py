"""The page skeletons: the Jinja2 templates ship with the package (found through
importlib.resources, matched by pyproject's package-data), and `render_page` escapes text but
keeps the HTML fragments it is given."""

from __future__ import annotations

import fnmatch
import tomllib
from importlib.resources import files
from pathlib import Path

from prefsmith.inspection import page as pg

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = ("base.html.j2", "inspect.html.j2", "eval.html.j2", "rounds.html.j2")


def test_templates_load_as_package_resources_and_are_package_data():
    folder = files("prefsmith.inspection") / "templates"
    shipped = sorted(p.name for p in folder.iterdir() if p.name.endswith(".j2"))
    assert shipped == sorted(TEMPLATES)
    assert "{% block content %}" in (folder / "base.html.j2").read_text(encoding="utf-8")
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    globs = config["tool"]["setuptools"]["package-data"]["prefsmith.inspection"]
    assert all(any(fnmatch.fnmatch(f"templates/{n}", g) for g in globs) for n in shipped)
    for name in TEMPLATES:  # each parses, and every child extends the base
        template = pg.environment().get_template(name)
        assert (
            name == "base.html.j2"
            or "base.html.j2"
            in template.environment.loader.get_source(template.environment, name)[0]
        )


def test_render_page_escapes_text_and_keeps_fragments():
    html = pg.render_page(
        "eval.html.j2",
        title="a <b> title",
        heading="H & co",
        tool="eval",
        sources={"tuned": "x<y>.parquet"},
        fragments={
            "headline": "<p class='headline'>ok</p>",
            "summary": pg.html_table(["k"], [["<i>"]]),
            "note": "",
            "charts": ["<div class='chart' data-points='1'></div>"],
            "examples": "",
        },
    )
    assert "<title>a &lt;b&gt; title</title>" in html and "<h1>H &amp; co</h1>" in html
    assert "tuned: x&lt;y&gt;.parquet" in html
    assert "<p class='headline'>ok</p>" in html and "<td>&lt;i&gt;</td>" in html
    assert "<figure><div class='chart' data-points='1'></div></figure>" in html
    assert html.index("window.__errors") < html.index("<script src='plotly.min.js'>")
    assert html.count("<script src=") == 1 and "prefsmith eval · " in html
    assert '<pre id="console-errors" data-count="0"></pre>' in html
