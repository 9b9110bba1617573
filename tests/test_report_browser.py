"""The HTML report in a real browser: headless Chromium (Debian's package, /usr/bin/chromium) driven by
Playwright for Python (no browser download: ``executable_path`` points at the system's Chromium). The page
must load without console errors, decode every figure, keep wide tables inside their own scrolling box,
and sort a column both ways while each rank table's footer (Friedman p, critical difference or matched seeds)
stays last.
"""

import os
import shutil
from pathlib import Path

import pytest

from crlbench.reports import report
from crlbench.suites.results import load_records
from report_fixture import write_cells

CHROMIUM = os.environ.get("CRLBENCH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
HIGH, LOW = "dci@reg.disentanglement", "counterfactual@probe.counterfactual_mse"
NARROW = 640  # px: a viewport narrower than the widest leaderboard

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason=f"no Chromium at {CHROMIUM} (Debian: "
                                "apt-get install chromium; .ci/apt.sh installs it; CRLBENCH_CHROMIUM names another)")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    root = tmp_path_factory.mktemp("browser")
    write_cells(root, datasets=("pendulum", "flow"), labels=("icm_vae", "causal_vae", "dear", "beta_vae"),
                failed=("flow", "dear", 1), unconverged=(("pendulum", "beta_vae", 0),), codes=4, samples=2, epochs=3)
    report.write_report(load_records(root), root / "report", title="In a browser")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        figures = len(list((root / "report" / "figures").glob("*.png")))
        yield chromium, (root / "report" / "index.html").as_uri(), figures
        chromium.close()


@pytest.fixture
def page(browser):
    chromium, url, _ = browser
    page = chromium.new_page(viewport={"width": NARROW, "height": 900})
    problems = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(url, wait_until="load")
    page.problems = problems
    yield page
    page.close()


def column_values(table, column: int) -> list[str]:
    """The data-sort values of one column of ``table`` (a locator), in the order the body shows them."""
    return table.evaluate(f"t => Array.from(t.tBodies[0].rows).map(r => r.cells[{column}].getAttribute('data-sort'))")


def indicator(header) -> str:
    return header.locator(".sort-indicator").inner_text().strip()


def numeric(values: list[str]) -> list[float]:
    return [float(value) for value in values if value]


def test_the_page_loads_without_console_errors(page):
    assert page.title() == "In a browser"
    assert page.problems == []


def test_every_figure_decodes(page, browser):
    images = page.eval_on_selector_all("img", "images => images.map(i => [i.complete, i.naturalWidth, "
                                              "i.naturalHeight])")
    assert len(images) == browser[2] > 0
    assert all(complete and width > 0 and height > 0 for complete, width, height in images)


def test_wide_tables_scroll_inside_their_box_not_the_page(page):
    assert page.evaluate("document.documentElement.scrollWidth") <= NARROW
    boxes = page.eval_on_selector_all(".table-scroll", "boxes => boxes.map(b => [b.scrollWidth, b.clientWidth, "
                                                     "getComputedStyle(b).overflowX])")
    assert all(overflow == "auto" for *_, overflow in boxes)
    assert any(scroll > client for scroll, client, _ in boxes)  # the leaderboards are wider than 640 px


def test_clicking_a_header_sorts_ascending_then_descending(page):
    table = page.locator("table.leaderboard").first
    header = table.locator("thead th").nth(4)  # the second score column
    assert header.get_attribute("aria-sort") == "none"
    header.locator("button").click()
    values = numeric(column_values(table, 4))
    assert values == sorted(values) and len(values) == 4
    assert header.get_attribute("aria-sort") == "ascending" and indicator(header) == "▲"
    header.locator("button").click()
    values = numeric(column_values(table, 4))
    assert values == sorted(values, reverse=True)
    assert header.get_attribute("aria-sort") == "descending" and indicator(header) == "▼"
    assert table.locator("thead th").nth(0).get_attribute("aria-sort") == "none"
    assert page.problems == []


def test_sorting_a_rank_table_leaves_its_footer_in_place(page):
    tables = page.locator("table.ranks")
    assert tables.count() == 3  # across datasets, then within each of the two datasets across seeds
    footers = [["Friedman p", "critical difference"]] + [["Friedman p", "matched seeds"]] * 2
    for index, footer in enumerate(footers):
        ranks = tables.nth(index)

        def last_rows() -> list[str]:
            return ranks.evaluate("t => Array.from(t.rows).slice(-2).map(r => r.cells[0].textContent.trim())")

        assert last_rows() == footer
        for order in ("ascending", "descending"):
            ranks.locator("thead th").nth(1).locator("button").click()
            values = numeric(column_values(ranks, 1))
            assert values == sorted(values, reverse=order == "descending") and len(values) == 4
            assert last_rows() == footer
            assert ranks.evaluate("t => t.tFoot.rows.length") == 2
            assert not any(name in ranks.locator("tbody").inner_text() for name in footer)
    assert page.problems == []


def test_text_columns_sort_alphabetically(page):
    training = page.locator("table.training")
    training.locator("thead th").nth(1).locator("button").click()  # model
    models = training.evaluate("t => Array.from(t.tBodies[0].rows).map(r => r.cells[1].textContent.trim())")
    assert models == sorted(models)
