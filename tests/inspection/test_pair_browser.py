"""The inspect report's pair browser: the rows it embeds (weights, examples, sampling) against
hand computations, and the page driven in real headless Chromium through Debian's chromedriver
(selenium): filtering, sorting, the example links, paging, no console errors — each check also
run on a page whose browser script is broken, to show it can fail."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
from browser_check import chrome_driver, hover_text, wait_for  # noqa: F401  (`driver` fixture)

from prefsmith.inspection import pair_browser as pb
from prefsmith.inspection.inspect import inspect_pairs
from prefsmith.inspection.weights import madpo_weight, w_qual
from prefsmith.schemas.io import write_table
from prefsmith.schemas.losses import MADPOParams, UniDPOParams
from prefsmith.schemas.tables import PAIRS

N = 60


def _pairs(root, n: int = N):
    rows = []
    for i in range(n):
        margin = round(0.05 * i - 1.0, 4)
        rows.append(
            {
                "pair_id": f"pair{i:03d}",
                "prompt_id": f"prompt{i:03d}",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": f"question {i} {'cats' if i % 7 == 0 else 'dogs'}"},
                ],
                "chosen": "good answer " * (1 + i % 3) + ("</script><b>x</b>" if i == 5 else ""),
                "rejected": "bad " * (1 + i % 4),
                "chosen_response_id": f"r{i}-0",
                "rejected_response_id": f"r{i}-1",
                "score_chosen": 1.0 + margin,
                "score_rejected": 1.0,
                "margin": margin,
                "strategy": "best_vs_worst",
                "scorer": "rule",
            }
        )
    return write_table(rows, root / "pairs.parquet", PAIRS)


def test_rows_carry_the_weights_the_params_give_and_cut_texts(tmp_path, monkeypatch):
    monkeypatch.setattr(pb, "TEXT_CHARS", 12)
    unidpo, madpo = UniDPOParams(eta=0.3), MADPOParams()
    rows, total = pb.browser_rows(_pairs(tmp_path), scale=2.0, unidpo=unidpo, madpo=madpo)
    assert total == rows.height == N and rows.columns == list(pb.COLUMNS)
    margin = rows["margin"].to_numpy()
    np.testing.assert_allclose(rows["w_qual"].to_numpy(), w_qual(2.0 * margin, eta=0.3))
    expected = madpo_weight(
        2.0 * margin, c_max=madpo.c_max, c_min=madpo.c_min, lam=madpo.lam, tau=madpo.tau
    )
    np.testing.assert_allclose(rows["madpo_weight"].to_numpy(), expected)
    assert rows["prompt"][7] == "question 7 c"  # the last user turn, not the system turn, cut
    assert rows["len_rejected"][3] == 4  # words of the whole text, not of the cut one


def test_examples_are_the_margin_quantiles_by_nearest_rank(tmp_path):
    rows, _ = pb.browser_rows(_pairs(tmp_path))
    # margins rise with i: nearest rank of q·(N−1) over 60 rows is i = round(q·59)
    assert pb.example_pairs(rows) == {
        "min": "pair000", "q25": "pair015", "median": "pair030", "q75": "pair044", "max": "pair059",
    }  # fmt: skip


def test_a_large_table_is_sampled_with_its_extremes(tmp_path, monkeypatch):
    monkeypatch.setattr(pb, "MAX_ROWS", 10)
    rows, total = pb.browser_rows(_pairs(tmp_path))
    assert (rows.height, total) == (10, N)
    assert {"pair000", "pair059"} <= set(rows["pair_id"])
    assert rows["pair_id"].n_unique() == 10
    again, _ = pb.browser_rows(_pairs(tmp_path))
    assert again["pair_id"].to_list() == rows["pair_id"].to_list()  # seeded


def test_embedded_json_cannot_close_its_script(tmp_path):
    rows, total = pb.browser_rows(_pairs(tmp_path))
    html = pb.browser_html(rows, total=total)
    data = html.split("id='pair-data'>", 1)[1].split("</script>", 1)[0]
    assert "</" not in data and "<\\/script>" in data


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    return inspect_pairs(_pairs(root), out_html=root / "report.html").html_path


def _drive(driver, path) -> dict:
    """Filter, sort, follow an example link, page: what the table shows after each."""
    from selenium.webdriver.common.by import By

    driver.get(path.as_uri())
    body_rows = lambda: driver.find_elements(By.CSS_SELECTOR, "#pair-table tbody tr")  # noqa: E731
    seen = {"first_page": len(body_rows())}
    driver.find_element(By.ID, "pair-filter").send_keys("cats")
    seen["filtered"] = sorted(r.get_attribute("data-pair") for r in body_rows())
    driver.find_element(By.ID, "pair-filter").clear()
    driver.find_element(By.CSS_SELECTOR, "#pair-table th[data-key='margin']").click()
    driver.find_element(By.CSS_SELECTOR, "#pair-table th[data-key='margin']").click()
    seen["top_by_margin"] = body_rows()[0].get_attribute("data-pair") if body_rows() else None
    driver.find_element(By.CSS_SELECTOR, "button.example[data-pair='pair030']").click()
    seen["example"] = [r.get_attribute("data-pair") for r in body_rows()]
    seen["errors"] = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    return seen


@pytest.mark.slow
def test_the_browser_filters_sorts_and_links_in_chromium(driver, page):
    seen = _drive(driver, page)
    assert seen["first_page"] == pb.PAGE_ROWS
    assert seen["filtered"] == [f"pair{i:03d}" for i in range(0, N, 7)]  # "cats": i % 7 == 0
    assert seen["top_by_margin"] == "pair059"  # second click: descending
    assert seen["example"] == ["pair030"]
    assert seen["errors"] == []


@pytest.mark.slow
def test_each_check_fails_on_a_broken_browser(driver, page, tmp_path):
    """Negative control: the same page with its filter made a no-op and a thrown error."""
    html = page.read_text(encoding="utf-8")
    broken = html.replace("function apply() {", "function apply() { draw(); return;", 1)
    broken = broken.replace("window.prefsmithReady = true;", "null.boom;", 1)
    assert broken != html
    (tmp_path / "broken.html").write_text(broken, encoding="utf-8")
    seen = _drive(driver, tmp_path / "broken.html")
    assert seen["filtered"] != [f"pair{i:03d}" for i in range(0, N, 7)]
    assert seen["example"] != ["pair030"]
    assert seen["errors"] != []


def _drive_charts(driver, path, *, bar: int, point: int) -> dict:
    """Hover one chosen-score bar and read plotly's hover label; click one scatter point."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    driver.get(path.as_uri())
    # plotly draws after the page loads: on a loaded machine the bars are not there at once
    drawn = "return document.querySelectorAll('#pair-hist .trace.bars .point path').length > 0;"
    wait_for(driver, drawn, timeout=15.0)
    bars = driver.find_elements(By.CSS_SELECTOR, "#pair-hist .trace.bars")[0]
    target = bars.find_elements(By.CSS_SELECTOR, ".point path")[bar]
    label = hover_text(driver, target, chart="#pair-hist")
    dots = driver.find_elements(By.CSS_SELECTOR, "#pair-scatter .scatterlayer .point")
    ActionChains(driver).move_to_element(dots[point]).click().perform()
    wait_for(driver, "return document.querySelectorAll('#pair-table tbody tr').length === 1;")
    rows = driver.find_elements(By.CSS_SELECTOR, "#pair-table tbody tr")
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    return {"label": label, "rows": [r.get_attribute("data-pair") for r in rows], "errors": errors}


def _tallest_chosen_bin(page) -> tuple[int, int]:
    from prefsmith.inspection.figures import histogram_bins
    from prefsmith.inspection.pair_charts import BINS

    rows, _ = pb.browser_rows(page.parent / "pairs.parquet")
    sides = {s: rows[f"score_{s}"].to_numpy() for s in ("chosen", "rejected")}
    _, counts = histogram_bins(sides, bins=BINS)
    index = int(np.argmax(counts["chosen"]))
    return index, int(counts["chosen"][index])


@pytest.mark.slow
def test_hover_shows_the_bins_count_and_a_click_selects_the_pair(driver, page):
    index, count = _tallest_chosen_bin(page)
    seen = _drive_charts(driver, page, bar=index, point=10)
    assert seen["label"] is not None and re.search(rf"count {count}\b", seen["label"]), seen[
        "label"
    ]
    assert seen["rows"] == ["pair010"]  # the point's pair, alone in the table
    assert seen["errors"] == []


@pytest.mark.slow
def test_the_chart_checks_fail_on_a_broken_page(driver, page, tmp_path):
    """Negative control: a hover label that shows the bin centre instead of the count, and a
    scatter whose click handler was never attached."""
    shutil.copy(page.parent / "plotly.min.js", tmp_path)
    html = page.read_text(encoding="utf-8")
    broken = html.replace("count %{y}", "count %{x}", 1).replace(
        "if (scatter && scatter.on)", "if (false)", 1
    )
    assert broken.count("count %{x}") == 1 and "if (false)" in broken
    (tmp_path / "broken.html").write_text(broken, encoding="utf-8")
    index, count = _tallest_chosen_bin(page)
    seen = _drive_charts(driver, tmp_path / "broken.html", bar=index, point=10)
    assert seen["label"] is None or not re.search(rf"count {count}\b", seen["label"])
    assert seen["rows"] != ["pair010"]
