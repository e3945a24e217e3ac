"""The HTML report: its plotly figures against numpy (bins, counts, trace names), the page opened
in a real headless Chromium (no console errors, plotly built every chart with data marks, a
screenshot kept in tests/artifacts/); plus the `prefsmith inspect` command function.

Chromium comes from the Debian package (`apt-get install -y chromium`). Where it is missing the
browser tests skip, except under CI (CI=true), where they fail so CI never skips silently.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import armorm_fixture as _fixture  # shared test helper (tests/ is on sys.path: tests/conftest.py)
import numpy as np
import polars as pl
import pytest
import typer
from browser_check import chart_specs, check_page_in_chromium, console_messages, parse, run_chromium
from rich.console import Console
from typer.testing import CliRunner

from prefsmith.flows.cli_inspect import inspect as inspect_command
from prefsmith.inspection import figures as fg
from prefsmith.inspection.figures import histogram_bins
from prefsmith.inspection.inspect import inspect_pairs
from prefsmith.inspection.report import render_terminal
from prefsmith.inspection.stats import DRIFT_NAMES
from prefsmith.schemas.contracts import ScoreTransform
from prefsmith.schemas.errors import InputError
from prefsmith.schemas.io import write_table
from prefsmith.schemas.manifest import Manifest, manifest_path
from prefsmith.schemas.tables import PAIRS, SCORES

OBJECTIVE_NAMES = _fixture.OBJECTIVE_NAMES  # ArmoRM's 19


def write_tables(root: Path, *, seed: int, n_prompts: int, shift: float) -> tuple[Path, Path]:
    """Pairs (ArmoRM-scale scores, 1–3 pairs per prompt), scores with 19 objectives, a manifest."""
    rng = np.random.default_rng(seed)
    pairs, scores = [], []
    for p in range(n_prompts):
        pid = f"prompt{p:04d}"
        for j in range(int(rng.integers(1, 4))):
            ids = (f"{pid}-{2 * j}", f"{pid}-{2 * j + 1}")
            lengths = rng.integers(5, 80, 2)
            rejected = 0.1 + shift + 0.03 * rng.standard_normal()
            chosen = rejected + abs(0.015 * rng.standard_normal()) + 1e-4
            pairs.append(
                {
                    "pair_id": f"{ids[0]}|{ids[1]}",
                    "prompt_id": pid,
                    "messages": [{"role": "user", "content": "q"}],
                    "chosen": "w " * int(lengths[0]),
                    "rejected": "w " * int(lengths[1]),
                    "chosen_response_id": ids[0],
                    "rejected_response_id": ids[1],
                    "score_chosen": chosen,
                    "score_rejected": rejected,
                    "margin": chosen - rejected,
                    "strategy": "top_k_pairs",
                    "scorer": "armo",
                }
            )
            for rid, score, n in ((ids[0], chosen, lengths[0]), (ids[1], rejected, lengths[1])):
                objectives = [
                    {"name": o, "value": float(score * (1 + k % 5) + 0.05 * rng.standard_normal())}
                    for k, o in enumerate(OBJECTIVE_NAMES)
                ]
                scores.append(
                    {
                        "response_id": rid,
                        "prompt_id": pid,
                        "scorer": "armo",
                        "score": score,
                        "objectives": objectives,
                        "n_tokens": int(n) + 20,
                    }
                )
    pairs_path = write_table(pairs, root / "pairs.parquet", PAIRS)
    scores_path = write_table(scores, root / "scores.parquet", SCORES)
    values = np.array([s["score"] for s in scores])
    Manifest(
        stage="pairs",
        unit="prompt",
        config={},
        inputs=[],
        outputs={"pairs": str(pairs_path)},
        rows_in=n_prompts + 5,
        rows_out=n_prompts,
        dropped={"all_tied": 2, "fewer_than_two_responses": 3},
        score_transform=ScoreTransform(
            method="zscore",
            scale=1 / values.std(),
            shift=-values.mean() / values.std(),
            scorer="armo",
        ),
    ).write(manifest_path(pairs_path))
    return pairs_path, scores_path


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A report of a 200-prompt table against an older, shifted one, with token lengths and objectives."""
    root = tmp_path_factory.mktemp("inspect")
    new, new_scores = write_tables(root / "new", seed=0, n_prompts=200, shift=0.0)
    old, old_scores = write_tables(root / "old", seed=1, n_prompts=160, shift=0.02)
    result = inspect_pairs(
        new,
        against=old,
        scores=new_scores,
        against_scores=old_scores,
        out_html=root / "report.html",
    )
    return result


def test_report_is_self_contained_and_every_chart_has_data(report):
    page = report.html_path.read_text(encoding="utf-8")
    local = page.replace("<script src='plotly.min.js'>", "")  # written beside the report
    assert not re.search(r"\b(src|href)\s*=|@import|url\(|<link\b", local)  # nothing fetched
    assert (report.html_path.parent / "plotly.min.js").stat().st_size > 1_000_000
    charts = parse(page).charts
    assert len(charts) == 8 + len(OBJECTIVE_NAMES) + len(DRIFT_NAMES) + 2  # + the pair browser's
    assert [c for c in charts if c["points"] == 0] == []
    assert page.count("<script src='plotly.min.js'>") == 1  # one shared copy, not one per chart
    assert sum(c["title"].startswith(OBJECTIVE_NAMES[0]) for c in charts) == 1
    assert page.index('class="warnings') < page.index("<h2>Summary")  # warnings box at the top
    assert "drift in score_chosen" in page and report.stats["drift"]["score_chosen"]["ks"] > 0.2
    assert "scored by: armo (current) · armo (against) — same scorer" in page
    assert report.stats["drift_scorers"] == {"current": ["armo"], "against": ["armo"], "same": True}


def test_score_histogram_is_numpys_on_the_shared_bins(report):
    """The page's "Scores (raw)" figure: one trace per side, bins over both sides pooled, each
    bin's hover count what np.histogram counts, y the fraction of that side."""
    page = report.html_path.read_text(encoding="utf-8")
    spec = chart_specs(page)["Scores (raw)"]
    pairs = pl.read_parquet(report.html_path.parent / "new" / "pairs.parquet")
    sides = {s: pairs[f"score_{s}"].to_numpy() for s in ("chosen", "rejected")}
    edges, _ = histogram_bins(sides, bins=fg.BINS)
    assert [t["name"] for t in spec["data"]] == ["chosen", "rejected"]
    for trace in spec["data"]:
        count = np.histogram(sides[trace["name"]], bins=edges)[0]
        custom = np.array(trace["customdata"])  # (bins, 3): lo, hi, count
        np.testing.assert_allclose(custom[:, :2], np.stack([edges[:-1], edges[1:]], axis=1))
        np.testing.assert_array_equal(custom[:, 2], count)
        np.testing.assert_allclose(trace["y"], count / pairs.height)
        assert "count %{customdata[2]:d}" in trace["hovertemplate"]
    assert {c["title"]: c["points"] for c in parse(page).charts}["Scores (raw)"] == 2 * pairs.height


def test_scatter_and_weight_curves_show_every_pair(report):
    """The chosen-vs-rejected scatter has a point per pair (named in its hover) and the y = x
    line; the weight curves carry one rug tick per finite normalized margin."""
    specs = chart_specs(report.html_path.read_text(encoding="utf-8"))
    pairs = pl.read_parquet(report.html_path.parent / "new" / "pairs.parquet")
    diagonal, points = specs["Chosen vs rejected score"]["data"]
    assert diagonal["mode"] == "lines" and diagonal["x"] == diagonal["y"]
    np.testing.assert_allclose(points["x"], pairs["score_rejected"].to_numpy())
    np.testing.assert_allclose(points["y"], pairs["score_chosen"].to_numpy())
    assert points["customdata"] == pairs["pair_id"].to_list()  # a point names its pair
    assert points["hovertemplate"].startswith("pair_id %{customdata}")
    *curves, rug = specs["Weight curves over the data's margins"]["data"]
    assert [c["name"].split(" (")[0] for c in curves] == ["w_qual", "MADPO w"]
    assert len(rug["x"]) == pairs.height and set(rug["y"]) == {0.0}


def test_empty_chart_reports_zero_points():
    html = fg.chart_html(fg.histogram({"a": np.array([np.nan])}, title="t", xlabel="x"))
    chart = parse(html).charts
    assert chart == [{"points": 0, "title": "t", "plotly": False, "traces": 0, "marks": 0}]
    assert [a["text"] for a in chart_specs(html)["t"]["layout"]["annotations"]] == ["no data"]


def test_report_in_headless_chromium(report, chromium):
    charts = check_page_in_chromium(
        chromium, report.html_path, screenshot="inspect_report.png", size=(1280, 2000)
    )
    assert len(charts) >= 30


def test_chromium_check_catches_console_errors(report, chromium, tmp_path):
    """Negative control: the same report with a failing script is caught by both detectors."""
    broken = tmp_path / "broken.html"
    shutil.copy(report.html_path.parent / "plotly.min.js", tmp_path)  # as beside the report
    broken.write_text(
        report.html_path.read_text(encoding="utf-8").replace(
            "</body>", "<script>console.error('boom'); notDefined();</script></body>"
        ),
        encoding="utf-8",
    )
    done = run_chromium(chromium, broken, "--enable-logging=stderr", "--v=0", "--dump-dom")
    dom = parse(done.stdout)
    assert (
        dom.errors["count"] == 2
        and "boom" in dom.errors["text"]
        and "notDefined" in dom.errors["text"]
    )
    assert len(console_messages(done.stderr)) == 2


def test_terminal_tables_keep_every_number(report):
    """At 80 and 160 columns: every quantile is printed whole (no "…"), and every warning shows."""
    for width in (80, 160):
        console = Console(record=True, width=width, file=io.StringIO())
        render_terminal(report.stats, warnings=report.warnings, console=console)
        text = console.export_text()
        assert "…" not in text
        for name in ("margin_raw", "w_qual", "len_diff"):
            d = report.stats["distributions"][name]
            assert all(f"{d[k]:.3g}" in text for k in ("q0", "q5", "q50", "q95", "q100")), name
        assert all(w.split(":")[0] in text for w in report.warnings) and report.warnings


def cli_app() -> typer.Typer:
    app = typer.Typer()
    app.command()(inspect_command)

    @app.callback()
    def main() -> None:  # keeps `inspect` a subcommand, as in prefsmith.flows.cli
        pass

    return app


def test_cli_command_writes_tables_html_and_json(tmp_path):
    pairs, scores = write_tables(tmp_path, seed=3, n_prompts=40, shift=0.0)
    runner = CliRunner()
    done = runner.invoke(
        cli_app(),
        [
            "inspect",
            str(pairs),
            "--scores",
            str(scores),
            "--json",
            str(tmp_path / "stats.json"),
            "--eta",
            "0.7",
        ],
        terminal_width=140,
    )
    assert done.exit_code == 0, done.output
    assert "Distributions" in done.output and "Per objective" in done.output
    html_path = tmp_path / "pairs.inspect.html"  # default: beside the pairs file
    assert html_path.is_file() and str(html_path) in done.output.replace("\n", "")
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["counts"]["pairs"] == pl.read_parquet(pairs).height
    assert set(stats["objectives"]) == set(OBJECTIVE_NAMES)
    assert "ρ with" in done.output  # the per-objective table has the correlation column (wrapped)
    page = html_path.read_text(encoding="utf-8")
    section = page[page.index('<section id="objectives">') :]
    table = section[: section.index("</table>")]
    assert "ρ with score" in table and table.count("<tr>") == 1 + len(OBJECTIVE_NAMES)
    rho = stats["objectives"][OBJECTIVE_NAMES[0]]["score_spearman"]
    assert rho is not None and f"<td>{rho:.3g}</td>" in table
    strict = runner.invoke(
        cli_app(), ["inspect", str(pairs), "--no-html", "--strict", "--tau-good", "100"]
    )
    assert strict.exit_code == 1 and "τ_good never active" in strict.output
    missing = runner.invoke(cli_app(), ["inspect", str(tmp_path / "missing.parquet"), "--no-html"])
    assert isinstance(missing.exception, InputError)
