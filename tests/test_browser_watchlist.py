"""The Watchlist tab in a real browser, while the replay feed runs.

``streamlit run app.py`` replays the bundled recording; in headless Chromium the test watches
the Live pair, types a second pair, and sees both rows with a z-score while the feed runs.
Then it clicks a row on the grid's canvas (at the row's position, computed from the grid's
header and row heights), while the tab's fragment keeps refreshing, and sees the Live panel
open on that pair — several times, alternating rows. Auto-waiting ``expect``; no fixed sleeps.
"""

from __future__ import annotations

import re
import time

from tests.conftest import wait_for

# The browser marks and skip, and the fixtures (one streamlit server, one Chromium).
from tests.test_browser_dashboard import browser, dashboard, pytestmark  # noqa: F401


def test_watchlist_tab_live_in_the_browser(dashboard, browser):  # noqa: F811 - fixtures
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1600, "height": 1300})
    exceptions = page.locator('[data-testid="stException"]')
    page.goto(f"{dashboard}/?window=10&refresh=1")
    start = page.get_by_role("button", name="Start feed")
    expect(start).to_be_enabled(timeout=30_000)
    start.click()
    # Data flows before the tab is opened: the live z-score chart is drawn.
    zchart = page.locator(".st-key-chart_zscore .js-pd-plot").first
    expect(zchart).to_have_attribute("data-rendered", re.compile(r"\d+"), timeout=90_000)

    page.get_by_role("tab", name="Watchlist").click()
    watch_live = page.get_by_role("button", name=re.compile(r"Watch the Live pair"))
    expect(watch_live).to_be_visible(timeout=30_000)
    watch_live.click()
    # (Success messages vanish with the tab's next refresh: the table is what counts.)
    table = page.locator(".st-key-watchlist_table")
    cells = table.locator('[role="gridcell"]')
    expect(cells.filter(has_text="BTCUSDT/ETHUSDT")).to_have_count(1, timeout=60_000)
    page.locator(".st-key-watch_pair input").fill("ETHUSDT/BTCUSDT")
    page.locator(".st-key-watch_window input").fill("20")
    page.get_by_role("button", name="Watch", exact=True).click()
    # Two rows, each with a finite z once the windows filled (the grid is a canvas: read the
    # accessible table Streamlit renders beside it).
    expect(cells.filter(has_text="ETHUSDT/BTCUSDT")).to_have_count(1, timeout=60_000)
    expect(cells.filter(has_text="BTCUSDT/ETHUSDT")).to_have_count(1, timeout=60_000)
    texts: list[str] = []

    def a_z_score() -> bool:  # each row: pair, tf, window, method, z, ...
        texts[:] = cells.all_inner_texts()
        rows = table_rows(texts)
        return len(rows) == 2 and all(re.fullmatch(r"-?\d+\.\d+", r[4].strip()) for r in rows)

    try:
        wait_for(a_z_score, 60, "a z-score in the table")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; cells: {texts}") from None
    expect(exceptions).to_have_count(0)

    live_tab = page.get_by_role("tab", name="Live")
    lost = []
    for round_ in range(4):  # alternate the rows, each click while the tab's fragment refreshes
        want = ("ETHUSDT", "BTCUSDT", "20") if round_ % 2 == 0 else ("BTCUSDT", "ETHUSDT", "10")
        click_row(page, table, cells, f"{want[0]}/{want[1]}")
        try:
            expect(live_tab).to_have_attribute("aria-selected", "true", timeout=10_000)
        except AssertionError:
            # Streamlit 1.67 can drop the very first selection event of a session's grid
            # (reproduced without this app: a dataframe with on_select in a tab); allowed once.
            lost.append(round_)
            click_row(page, table, cells, f"{want[0]}/{want[1]}")
            expect(live_tab).to_have_attribute("aria-selected", "true", timeout=30_000)
        expect(page.locator(".st-key-x input")).to_have_value(want[0], timeout=30_000)
        expect(page.locator(".st-key-y input")).to_have_value(want[1])
        expect(page.locator(".st-key-window input")).to_have_value(want[2])
        expect(page.get_by_role("heading", name=f"{want[0]} / {want[1]} · 1s")).to_be_visible()
        expect(zchart).to_have_attribute("data-rendered", re.compile(r"\d+"), timeout=60_000)
        page.get_by_role("tab", name="Watchlist").click()
        expect(cells.filter(has_text=f"{want[0]}/{want[1]}")).to_have_count(1, timeout=30_000)
    print(f"rounds whose first click opened nothing: {lost}")
    assert lost in ([], [0]), f"clicks on a row opened nothing in rounds {lost}"
    expect(exceptions).to_have_count(0)
    page.close()


def table_rows(texts: list[str]) -> list[list[str]]:
    """The accessible table's cells cut into rows at each pair cell (``X/Y``): how many of the
    last columns it holds depends on the grid's width."""
    starts = [i for i, t in enumerate(texts) if re.fullmatch(r"[A-Z0-9]+/[A-Z0-9]+", t.strip())]
    return [texts[a:b] for a, b in zip(starts, [*starts[1:], len(texts)], strict=True)]


#: Glide data grid's geometry in Streamlit's dataframe (pixels): header and row height.
HEADER_PX = 35
ROW_PX = 35


def click_row(page, table, cells, pair: str) -> None:
    """Click the "pair" cell of the row showing ``pair``, on the grid's canvas.

    The row's position is read from the accessible table (rows in display order) right
    before the click, once the grid stopped moving.
    """
    canvas = table.locator("canvas").first
    seen: list = []

    def settled() -> dict | None:
        """The grid's box once it stayed put for 1.5 s: a message above it (e.g. "Watching
        ...") goes away at the tab's next refresh and moves the grid up."""
        box = canvas.bounding_box()
        now = time.monotonic()
        if not seen or seen[-1][1] != box:
            seen.append((now, box))
        return box if box is not None and now - seen[-1][0] >= 1.5 else None

    box = wait_for(settled, 30, "the grid to stay in place")
    texts = cells.all_inner_texts()
    rows = table_rows(texts)
    found = [i for i, r in enumerate(rows) if r[0].strip() == pair]
    assert found, f"no row {pair} in {rows}"
    index = found[0]
    page.mouse.click(box["x"] + 90, box["y"] + HEADER_PX + ROW_PX * index + ROW_PX / 2)
