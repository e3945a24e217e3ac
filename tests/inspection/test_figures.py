"""The plotly figure builders shared by both reports, against numbers worked by hand."""

from __future__ import annotations

import numpy as np
from browser_check import chart_specs, parse

from prefsmith.inspection import figures as fg


def test_histogram_counts_bins_and_fractions_by_hand():
    """a = [0, 1, 1.5, 2], b = [2, 4] on 2 shared bins over [0, 4]: [0, 2) and [2, 4].
    a: 3 in the first, 1 in the last (2.0 is the second bin's left edge); b: 0 and 2."""
    figure = fg.histogram(
        {"a": np.array([0.0, 1.0, 1.5, 2.0, np.nan]), "b": np.array([2.0, 4.0])},
        title="t",
        xlabel="x",
        bins=2,
    )
    a, b = figure.data
    assert (a.name, b.name) == ("a", "b") and fg.points_of(figure) == 6  # NaN not counted
    assert [c[2] for c in a.customdata] == [3, 1] and [c[2] for c in b.customdata] == [0, 2]
    assert [c[:2] for c in a.customdata] == [[0.0, 2.0], [2.0, 4.0]]
    np.testing.assert_allclose(a.y, [0.75, 0.25])  # fraction of a's 4 finite values
    np.testing.assert_allclose(b.y, [0.0, 1.0])
    assert figure.layout.barmode == "overlay" and figure.layout.showlegend


def test_integer_data_gets_integer_centred_bins():
    """Lengths 1…5 in 40 bins: 5 bins of width 1 centred on the integers, none empty."""
    edges, counts = fg.histogram_bins({"n": np.array([1.0, 2, 3, 4, 5, 5])}, bins=40)
    np.testing.assert_allclose(edges, [0.5, 1.5, 2.5, 3.5, 4.5, 5.5])
    assert counts["n"].tolist() == [1, 1, 1, 1, 2]


def test_scatter_names_points_samples_seeded_and_draws_the_diagonal(monkeypatch):
    monkeypatch.setattr(fg, "MAX_POINTS", 10)
    x = np.arange(30.0)
    x[3] = np.nan
    figure = fg.scatter(
        x, 2 * x, ids=[f"p{i}" for i in range(30)], id_name="prompt_id",
        title="t", xlabel="x", ylabel="y", diagonal=True,
    )  # fmt: skip
    diagonal, points = figure.data
    assert diagonal.hoverinfo == "skip" and diagonal.x == diagonal.y
    assert len(points.x) == 10 == fg.points_of(figure) and "p3" not in points.customdata
    assert all(f"p{int(a)}" == c for a, c in zip(points.x, points.customdata, strict=True))
    assert "prompt_id %{customdata}" in points.hovertemplate
    again = fg.scatter(x, 2 * x, ids=[f"p{i}" for i in range(30)], id_name="prompt_id",
                       title="t", xlabel="x", ylabel="y")  # fmt: skip
    assert again.data[0].customdata == points.customdata  # seeded: the same sample


def test_curves_carry_a_rug_and_bars_their_counts():
    grid = np.linspace(0, 1, 5)
    figure = fg.curves(
        {"w": (grid, grid**2)}, rug=np.array([0.2, np.inf, 0.4]), rug_name="pairs",
        title="c", xlabel="x", ylabel="y",
    )  # fmt: skip
    curve, rug = figure.data
    assert curve.mode == "lines" and rug.x == (0.2, 0.4) and rug.y == (0.0, 0.0)
    assert fg.points_of(figure) == 5 + 2
    bars = fg.category_bars({"win": 4, "tie": 1}, title="o", ylabel="prompts")
    assert bars.data[0].y == (4, 1) and fg.points_of(bars) == 5
    assert "prompts %{y:d}" in bars.data[0].hovertemplate


def test_chart_html_declares_the_chart_and_escapes_its_script():
    figure = fg.histogram({"a": np.array([1.0, 2.0])}, title="x </script> y", xlabel="v")
    html = fg.chart_html(figure, div_id="one")
    assert parse(html).charts == [
        {"points": 2, "title": "x </script> y", "plotly": False, "traces": 0, "marks": 0}
    ]
    assert html.count("</script>") == 1 and 'id="one"' in html and "Plotly.newPlot(el" in html
    assert chart_specs(html)["x </script> y"]["layout"]["meta"] == {"points": 2}
