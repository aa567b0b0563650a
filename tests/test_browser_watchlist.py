"""The Watchlist tab in a real browser, while the replay feed runs.

``streamlit run app.py`` replays the bundled recording; in headless Chromium the test watches
the Live pair, types a second pair, and sees both rows with a z-score while the feed runs.
Then one click on a pair's pill opens that pair in the Live panel, every time: four rounds
alternating the pairs, then the first click of several fresh browser sessions opened straight
on the Watchlist tab, each made right after the tab appears, while its fragment refreshes and
after the mouse moved elsewhere (what made the grid drop a session's first click:
docs/alerts.md, "One click opens a pair"). No click may be lost. Auto-waiting ``expect``; no
fixed sleeps.
"""

from __future__ import annotations

import re

from bench.harness import chart_selector
from tests.conftest import wait_for

# The browser marks and skip, and the fixtures (one streamlit server, one Chromium).
from tests.test_browser_dashboard import browser, dashboard, pytestmark  # noqa: F401

PAIRS = {
    "ETHUSDT/BTCUSDT": ("ETHUSDT", "BTCUSDT", "20"),
    "BTCUSDT/ETHUSDT": ("BTCUSDT", "ETHUSDT", "10"),
}
#: A click that reached the server opens the Live tab within this (a full rerun under load).
OPENED_MS = 15_000


def test_watchlist_tab_live_in_the_browser(dashboard, browser):  # noqa: F811 - fixtures
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1600, "height": 1300})
    exceptions = page.locator('[data-testid="stException"]')
    page.goto(f"{dashboard}/?window=10&refresh=1")
    start = page.get_by_role("button", name="Start feed")
    expect(start).to_be_enabled(timeout=30_000)
    start.click()
    # Data flows before the tab is opened: the live z-score chart is drawn.
    zchart = page.locator(chart_selector("chart_zscore")).first
    expect(zchart).to_have_attribute("data-rendered", re.compile(r"\d+"), timeout=90_000)

    page.get_by_role("tab", name="Watchlist").click()
    watch_two_pairs(page)
    expect(exceptions).to_have_count(0)

    for round_ in range(4):  # alternate the pairs; each click while the tab's fragment refreshes
        pair = list(PAIRS)[round_ % 2]
        open_by_pill(page, pair, f"round {round_}")
        expect(zchart).to_have_attribute("data-rendered", re.compile(r"\d+"), timeout=60_000)
        page.get_by_role("tab", name="Watchlist").click()
    expect(exceptions).to_have_count(0)
    page.close()


def test_the_first_click_of_fresh_browser_sessions_opens_the_pair(dashboard, browser):  # noqa: F811
    """Each new browser context is a new Streamlit session: its very first click counts."""
    from playwright.sync_api import expect

    setup = browser.new_page(viewport={"width": 1600, "height": 1300})
    setup.goto(f"{dashboard}/?view=Watchlist&window=10&refresh=1")
    start, stop = (setup.get_by_role("button", name=n) for n in ("Start feed", "Stop feed"))
    wait_for(lambda: start.is_enabled() or stop.is_enabled(), 60, "the feed buttons")
    if start.is_enabled():  # run alone, this test finds the feed stopped and nothing watched
        start.click()
    watch_two_pairs(setup)
    setup.close()
    for session in range(3):
        context = browser.new_context(viewport={"width": 1600, "height": 1300})
        page = context.new_page()
        page.goto(f"{dashboard}/?view=Watchlist&window=10&refresh=1")
        pair = list(PAIRS)[session % 2]
        open_by_pill(page, pair, f"session {session}, first click")
        page.get_by_role("tab", name="Watchlist").click()
        open_by_pill(page, list(PAIRS)[(session + 1) % 2], f"session {session}, second click")
        expect(page.locator('[data-testid="stException"]')).to_have_count(0)
        context.close()


def watch_two_pairs(page) -> None:
    """On the Watchlist tab: watch the Live pair (window 10) and ETHUSDT/BTCUSDT (window 20),
    unless watched already; wait until both rows show a finite z-score."""
    from playwright.sync_api import expect

    table = page.locator(".st-key-watchlist_table")
    cells = table.locator('[role="gridcell"]')
    watch_live = page.get_by_role("button", name=re.compile(r"Watch the Live pair"))
    expect(watch_live).to_be_visible(timeout=30_000)
    if cells.filter(has_text="BTCUSDT/ETHUSDT").count() == 0:
        watch_live.click()
        # (Success messages vanish with the tab's next refresh: the table is what counts.)
        expect(cells.filter(has_text="BTCUSDT/ETHUSDT")).to_have_count(1, timeout=60_000)
    if cells.filter(has_text="ETHUSDT/BTCUSDT").count() == 0:
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


def open_by_pill(page, pair: str, what: str) -> None:
    """One click on ``pair``'s pill, made as soon as the pill shows, after the mouse moved
    over the page elsewhere; the Live panel must open on that pair (no second click)."""
    from playwright.sync_api import expect

    x, y, window = PAIRS[pair]
    label = f"{pair} · 1s · w{window} · "  # a substring: the method follows
    pill = page.locator(".st-key-watchlist_open").get_by_role("radio", name=label)
    expect(pill).to_be_visible(timeout=60_000)
    page.mouse.move(5, 5)
    page.mouse.move(200, 600, steps=4)  # the mouse was elsewhere before the click
    pill.click()
    live_tab = page.get_by_role("tab", name="Live")
    try:
        expect(live_tab).to_have_attribute("aria-selected", "true", timeout=OPENED_MS)
    except AssertionError:
        raise AssertionError(f"{what}: one click on {pair} opened nothing") from None
    expect(page.locator(".st-key-x input")).to_have_value(x, timeout=30_000)
    expect(page.locator(".st-key-y input")).to_have_value(y)
    expect(page.locator(".st-key-window input")).to_have_value(window)
    expect(page.get_by_role("heading", name=f"{x} / {y} · 1s")).to_be_visible(timeout=30_000)


def table_rows(texts: list[str]) -> list[list[str]]:
    """The accessible table's cells cut into rows at each pair cell (``X/Y``): how many of the
    last columns it holds depends on the grid's width."""
    starts = [i for i, t in enumerate(texts) if re.fullmatch(r"[A-Z0-9]+/[A-Z0-9]+", t.strip())]
    return [texts[a:b] for a, b in zip(starts, [*starts[1:], len(texts)], strict=True)]
