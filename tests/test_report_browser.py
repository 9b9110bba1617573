"""The HTML report in a real browser: headless Chromium (Debian's package, /usr/bin/chromium) driven by
Playwright for Python (no browser download: ``executable_path`` points at the system's Chromium). The page
must load without console errors, decode every figure, keep wide tables inside their own scrolling box, fit a
phone's width (390 px) with an unbroken 40-character commit hash in it, link every section from its table of
contents and every figure to its PNG, and sort a column both ways by a click anywhere on its header or by the
keyboard, while each rank table's footer (Friedman p, critical difference or matched seeds) stays last.
"""

import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from crlbench.reports import report
from crlbench.suites.results import load_records
from report_fixture import write_cells

CHROMIUM = os.environ.get("CRLBENCH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
HIGH, LOW = "dci@reg.disentanglement", "counterfactual@probe.counterfactual_mse"
NARROW = 640  # px: a viewport narrower than the widest leaderboard
PHONE = 390  # px: a phone's viewport
COMMIT = "e9d8d42a1b2c3d4e5f60718293a4b5c6d7e8f901"  # a full commit hash: one unbroken 40-character token

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason=f"no Chromium at {CHROMIUM} (Debian: "
                                "apt-get install chromium; .ci/apt.sh installs it; CRLBENCH_CHROMIUM names another)")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    root = tmp_path_factory.mktemp("browser")
    write_cells(root, datasets=("pendulum", "flow"), labels=("icm_vae", "causal_vae", "dear", "beta_vae"),
                failed=("flow", "dear", 1), unconverged=(("pendulum", "beta_vae", 0),), codes=4, samples=2, epochs=3)
    records = load_records(root)
    for record in records:
        record["provenance"]["git_commit"] = COMMIT
    report.write_report(records, root / "report", title="In a browser")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        figures = len(list((root / "report" / "figures").glob("*.png")))
        yield chromium, (root / "report" / "index.html").as_uri(), figures
        chromium.close()


def open_page(browser, width: int):
    chromium, url, _ = browser
    page = chromium.new_page(viewport={"width": width, "height": 900})
    problems = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(url, wait_until="load")
    page.problems = problems
    return page


@pytest.fixture
def page(browser):
    page = open_page(browser, NARROW)
    yield page
    page.close()


@pytest.fixture
def phone(browser):
    page = open_page(browser, PHONE)
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


def test_a_click_anywhere_on_a_header_cell_sorts_and_its_button_fills_the_cell(page):
    table = page.locator("table.leaderboard").first
    header = table.locator("thead th").nth(3)  # the first score column
    cell, button = header.bounding_box(), header.locator("button").bounding_box()
    assert button["width"] == pytest.approx(cell["width"], abs=1)  # the button is the cell's whole width
    header.click(position={"x": 2, "y": 2})  # the cell's top left corner
    values = numeric(column_values(table, 3))
    assert values == sorted(values) and header.get_attribute("aria-sort") == "ascending"
    header.click(position={"x": cell["width"] - 2, "y": cell["height"] - 2})  # its bottom right corner
    assert numeric(column_values(table, 3)) == sorted(values, reverse=True)
    assert header.get_attribute("aria-sort") == "descending" and indicator(header) == "▼"
    assert page.problems == []


def test_the_keyboard_sorts_from_the_header_button(page):
    table = page.locator("table.training")
    header = table.locator("thead th").nth(1)  # model
    header.locator("button").focus()
    page.keyboard.press("Enter")
    models = table.evaluate("t => Array.from(t.tBodies[0].rows).map(r => r.cells[1].textContent.trim())")
    assert models == sorted(models) and header.get_attribute("aria-sort") == "ascending"
    page.keyboard.press("Space")
    assert header.get_attribute("aria-sort") == "descending"
    assert table.evaluate("t => Array.from(t.tBodies[0].rows).map(r => r.cells[1].textContent.trim())") == sorted(
        models, reverse=True)


def test_the_page_fits_a_phone_and_its_figures_scale_to_it(phone):
    assert COMMIT in phone.locator("footer").inner_text()
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE
    widths = phone.eval_on_selector_all("figure img", "images => images.map(i => [i.clientWidth, i.naturalWidth])")
    assert widths and all(shown <= PHONE for shown, _ in widths)
    assert any(natural > shown for shown, natural in widths)  # scaled down: the link opens it full size
    assert phone.problems == []


def test_every_figure_links_to_its_full_size_file(page, browser):
    links = page.eval_on_selector_all("figure > a", "links => links.map(a => [a.href, a.querySelectorAll('img').length])")
    assert len(links) == browser[2]
    for href, images in links:
        assert images == 1 and href.startswith("file://") and href.endswith(".png")
        assert Path(unquote(urlparse(href).path)).is_file(), href


def test_the_contents_link_every_section_and_dataset_table(page):
    targets = page.eval_on_selector_all("nav.contents a", "links => links.map(a => a.getAttribute('href'))")
    assert len(targets) == len(set(targets)) > 10
    assert all(page.evaluate("id => document.getElementById(id) !== null", target[1:]) for target in targets)
    headings = page.eval_on_selector_all("h2[id], h3[id]", "hs => hs.map(h => h.id)")
    assert {heading for heading in headings if not heading.endswith("-title")} <= {target[1:] for target in targets}
    assert {"#leaderboard-pendulum", "#leaderboard-flow", "#paired-flow", "#seed-ranks-pendulum"} <= set(targets)
    page.locator("nav.contents a[href='#failed-cells']").click()
    assert page.evaluate("location.hash") == "#failed-cells"
    assert page.locator("#failed-cells").evaluate("h => h.getBoundingClientRect().top") < 5


def test_text_columns_sort_alphabetically(page):
    training = page.locator("table.training")
    training.locator("thead th").nth(1).locator("button").click()  # model
    models = training.evaluate("t => Array.from(t.tBodies[0].rows).map(r => r.cells[1].textContent.trim())")
    assert models == sorted(models)
