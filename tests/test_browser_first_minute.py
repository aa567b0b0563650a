"""The newcomer's first minute in a real browser: offline start, every control, URL, network.

``streamlit run app.py`` with NO ``--replay``, an empty database and the Binance roots pointed
at a closed local port (so "Binance cannot be reached" happens at once), driven by headless
Chromium through Playwright. Every page load also records the browser's console errors and
every request it makes: the page may talk to its own server only.

The blank page of issue 9 ("Cannot set a node at a delta path" after pressing the banner's
"Switch to replay") appeared in about 1 of 4 tries on the old code; the newcomer test repeats
the path 10 times, each in a fresh browser session. Polling with deadlines; no fixed sleeps.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bench.harness import chart_selector
from tests.conftest import free_port, streamlit_server

# The browser marks and skip, and the one Chromium launch, shared with the dashboard tests.
from tests.test_browser_dashboard import browser, pytestmark  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
#: Generous: 8 engineers share 2 CPU cores; the waits end as soon as the page is ready.
SLOW_MS = 90_000


#: The server process of each URL (to read its memory from /proc).
SERVER_PIDS: dict[str, int] = {}


def peak_rss_mb(url: str) -> float:
    """The server's peak resident memory so far (``VmHWM``), MB."""
    status = Path(f"/proc/{SERVER_PIDS[url]}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


@contextlib.contextmanager
def offline_server(tmp: Path) -> Iterator[str]:
    """``streamlit run app.py`` with no replay, an empty database and no reachable Binance."""
    tmp.mkdir(parents=True, exist_ok=True)
    closed = free_port()  # nothing listens on ``closed``
    env = dict(
        os.environ,
        DB_PATH=str(tmp / "live.db"),
        BINANCE_REST_BASE=f"http://127.0.0.1:{closed}",
        BINANCE_WS_BASE=f"ws://127.0.0.1:{closed}",
        UPLOAD_DIR=str(tmp / "uploads"),
        PYTHONUNBUFFERED="1",
    )
    for var in ("DATABASE_URL", "REPLAY_FILES", "FEED_AUTOSTART"):
        env.pop(var, None)
    flags = ["--server.fileWatcherType", "none"]  # a worktree edit must not reload the page
    with streamlit_server(tmp, env, flags=flags, timeout_s=60) as (url, proc):
        SERVER_PIDS[url] = proc.pid
        yield url


@pytest.fixture(scope="module")
def offline_dashboard(tmp_path_factory) -> Iterator[str]:
    with offline_server(tmp_path_factory.mktemp("offline")) as url:
        yield url


@dataclass
class Watched:
    """A page with what its browser reported: console errors and requests to other origins."""

    page: object
    origin: str
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    def clean(self, where: str) -> None:
        """The page is alive: no console error, no request to another origin so far."""
        assert not self.errors, f"{where}: browser console errors: {self.errors[:3]}"
        assert not self.foreign, f"{where}: requests to other origins: {self.foreign[:5]}"


def open_page(browser, url: str, path: str = "/") -> Watched:  # noqa: F811 - shared fixture
    ctx = browser.new_context(viewport={"width": 1500, "height": 1200})
    page = ctx.new_page()
    w = Watched(page, urlsplit(url).netloc)

    def on_console(msg) -> None:
        if msg.type == "error":
            w.errors.append(msg.text.splitlines()[0][:300])

    def on_request(req) -> None:
        parts = urlsplit(req.url)
        if parts.scheme in ("data", "blob", "about"):
            return
        if parts.netloc != w.origin:
            w.foreign.append(req.url)

    page.on("console", on_console)
    page.on("request", on_request)
    page.on("websocket", lambda ws: on_request(ws))
    page.goto(url + path)
    return w


def close(w: Watched) -> None:
    w.page.context.close()


def expect_charts(w: Watched, where: str) -> None:
    """Title and the price chart are on the page (the chart drawn by Plotly)."""
    from playwright.sync_api import expect

    page = w.page
    expect(page.get_by_role("heading", level=1)).to_contain_text(
        "BTCUSDT / ETHUSDT", timeout=SLOW_MS
    )
    chart = page.locator(chart_selector("chart_price")).first
    expect(chart).to_have_attribute("data-rendered", re.compile(r"\d+"), timeout=SLOW_MS)
    w.clean(where)


@pytest.mark.timeout(1200)  # ~2 min on an idle machine; generous for a shared one
def test_newcomer_offline_switch_to_replay_ten_times(browser, tmp_path):  # noqa: F811 - shared fixture
    """No internet, empty database: the banner appears, its button shows the charts, 10 of 10.

    Each round is a fresh start (a new server, a new empty database, a new browser session):
    the blank page of issue 9 came in fresh starts, with the button pressed while the live feed
    was still retrying Binance and the status strip refreshing.
    """
    from playwright.sync_api import expect

    for round_no in range(10):
        where = f"round {round_no + 1}"
        with offline_server(tmp_path / f"round{round_no}") as url:
            w = open_page(browser, url)
            page = w.page
            expect(page.get_by_text("Binance cannot be reached")).to_be_visible(timeout=SLOW_MS)
            page.get_by_role("button", name="Switch to replay").click()
            expect_charts(w, where)
            expect(page.get_by_text(re.compile(r"Replay · .* looped"))).to_be_visible(
                timeout=SLOW_MS
            )
            w.clean(where)
            close(w)
        print(f"{where}: charts after the banner's button, no console error", flush=True)


@pytest.mark.timeout(600)
def test_a_chart_warming_up_says_what_it_waits_for_then_draws_in_its_cell(browser, tmp_path):  # noqa: F811 - shared fixture
    """A replay with a 600-bar window: the z-score's cell says what it waits for (a note of
    ``ui/plot.js``'s grid, plain text); with the window cut to 20 the same cell holds the
    drawn chart and no note, and the six cells keep their order."""
    from playwright.sync_api import expect

    with offline_server(tmp_path) as url:
        w = open_page(browser, url, "/?window=600&tf=1s")
        page = w.page
        page.get_by_role("button", name="Switch to replay").click(timeout=SLOW_MS)
        cell = page.locator('[data-chart="chart_zscore"]')
        expect(cell.locator(".pd-note")).to_have_text(
            re.compile(r"^Z-score: waiting for data — \d+ of 601 bars\.$"), timeout=SLOW_MS
        )
        expect(page.locator(chart_selector("chart_price"))).to_have_attribute(
            "data-rendered", re.compile(r"\d+"), timeout=SLOW_MS
        )
        _type(w, "window", "20")
        expect(page.locator(chart_selector("chart_zscore"))).to_have_attribute(
            "data-rendered", re.compile(r"\d+"), timeout=SLOW_MS
        )
        expect(cell.locator(".pd-note")).to_have_count(0)
        order = page.locator(".pd-grid > .pd-cell").evaluate_all(
            "cells => cells.map(c => c.dataset.chart)"
        )
        assert order == [
            "chart_price", "chart_zscore", "chart_spread", "chart_beta", "chart_corr",
            "chart_volume",
        ]  # fmt: skip
        w.clean("warm-up")
        close(w)


def _title(w: Watched, text: str = "BTCUSDT / ETHUSDT") -> None:
    from playwright.sync_api import expect

    expect(w.page.get_by_role("heading", level=1)).to_contain_text(text, timeout=SLOW_MS)


def _choose(w: Watched, key: str, option: str) -> None:
    """Pick ``option`` of the selectbox with widget key ``key``."""
    w.page.locator(f".st-key-{key}").click()
    w.page.get_by_role("option", name=option, exact=True).click()


def _segment(w: Watched, key: str, option: str) -> None:
    w.page.locator(f".st-key-{key}").get_by_text(option, exact=True).click()


def _type(w: Watched, key: str, text: str) -> None:
    box = w.page.locator(f".st-key-{key} input")
    box.fill(text)
    box.press("Enter")


@pytest.mark.timeout(900)
def test_every_control_is_safe_while_the_live_panel_refreshes(offline_dashboard, browser):  # noqa: F811 - shared fixture
    """Each control, pressed while the live panel redraws twice a second: title, charts, no
    console error, no request to another origin — after every single step."""
    from playwright.sync_api import expect

    w = open_page(browser, offline_dashboard, "/?window=10&refresh=0.5")
    page = w.page
    expect(page.locator(".st-key-source_choice")).to_be_visible(timeout=SLOW_MS)
    if page.get_by_text("Binance cannot be reached").count():
        page.get_by_role("button", name="Switch to replay").click()
    _segment(w, "source_choice", "Replay")  # a no-op when already replaying
    expect_charts(w, "replay running")
    text = page.get_by_text

    steps = [
        ("timeframe 1m", lambda: _segment(w, "tf", "1m"), lambda: _title(w, "· 1m")),
        ("timeframe 1s", lambda: _segment(w, "tf", "1s"), lambda: expect_charts(w, "1s")),
        ("method Kalman", lambda: _choose(w, "method", "Kalman"), lambda: expect_charts(w, "k")),
        (
            "X equal to Y",
            lambda: _type(w, "x", "ETHUSDT"),
            lambda: expect(text("X and Y are both ETHUSDT").first).to_be_visible(timeout=SLOW_MS),
        ),
        ("X back", lambda: _type(w, "x", "BTCUSDT"), lambda: expect_charts(w, "pair back")),
        (
            "stop feed",
            lambda: page.get_by_role("button", name="Stop feed").click(),
            lambda: expect(text("feed stopped").first).to_be_visible(timeout=SLOW_MS),
        ),
        (
            "start feed",
            lambda: page.get_by_role("button", name="Start feed").click(),
            lambda: expect(text("feed running").first).to_be_visible(timeout=SLOW_MS),
        ),
        (
            "stationarity",
            lambda: page.get_by_role("button", name="Run ADF / Engle–Granger").click(),
            lambda: expect(
                text(re.compile("Engle–Granger p|Stationarity tests: waiting")).first
            ).to_be_visible(timeout=SLOW_MS),
        ),
        (
            "tab Alerts",
            lambda: page.get_by_role("tab", name="Alerts").click(),
            lambda: expect(page.get_by_role("button", name="Add rule")).to_be_visible(
                timeout=SLOW_MS
            ),
        ),
        (
            "add rule",
            lambda: page.get_by_role("button", name="Add rule").click(),
            lambda: expect(text(re.compile(r"Rule \d+ added"))).to_be_visible(timeout=SLOW_MS),
        ),
        (
            "disable rule",
            lambda: page.get_by_role("button", name="Disable").click(),
            lambda: expect(page.get_by_role("button", name="Enable")).to_be_visible(
                timeout=SLOW_MS
            ),
        ),
        (
            "delete rule",
            lambda: page.get_by_role("button", name="Delete").click(),
            lambda: expect(text("No rules yet").first).to_be_visible(timeout=SLOW_MS),
        ),
        (
            "tab Feed health",
            lambda: page.get_by_role("tab", name="Feed health").click(),
            lambda: expect(text("Gaps found in the id sequences")).to_be_visible(timeout=SLOW_MS),
        ),
        (
            "tab Live",
            lambda: page.get_by_role("tab", name="Live").click(),
            lambda: expect_charts(w, "tab live"),
        ),
        (
            "source Live",
            lambda: _segment(w, "source_choice", "Live"),
            lambda: expect(text("Binance cannot be reached")).to_be_visible(timeout=SLOW_MS),
        ),
        (
            "banner switch",
            lambda: page.get_by_role("button", name="Switch to replay").click(),
            lambda: expect_charts(w, "banner"),
        ),
        (
            "source Live and straight back to Replay",
            lambda: (_segment(w, "source_choice", "Live"), _segment(w, "source_choice", "Replay")),
            lambda: expect_charts(w, "back"),
        ),
    ]
    for name, act, settled in steps:
        act()
        settled()
        _title(w, "Pairs desk" if name == "X equal to Y" else "/")
        w.clean(name)
    close(w)


def test_hostile_url_text_is_shown_as_text_and_fetches_nothing(offline_dashboard, browser):  # noqa: F811 - shared fixture
    """``?x=[Click](https://ev.il)`` is no link, ``?y=![](http://host/a.png)`` loads no image,
    and the URL's unusable values get their notes."""
    from playwright.sync_api import expect

    w = open_page(
        browser,
        offline_dashboard,
        "/?x=[Click](https://ev.il)&y=![](http://host/a.png)&method=kalman&window=99999999",
    )
    page = w.page
    expect(page.get_by_text("URL parameter method='kalman'")).to_be_visible(timeout=SLOW_MS)
    expect(page.get_by_text("window='99999999' is above the maximum; using 1000")).to_be_visible()
    shown = re.compile(r"\[Click\]\(https:\u200b?//ev\.il\)")  # shown, as text
    expect(page.get_by_text(shown).first).to_be_visible(timeout=SLOW_MS)
    expect(page.locator('a[href*="ev.il"]')).to_have_count(0)
    expect(page.locator('img[src*="host"]')).to_have_count(0)
    _title(w, "Pairs desk")
    w.clean("hostile URL")
    close(w)


def test_a_gzip_bomb_upload_is_refused_once_in_bounded_memory(offline_dashboard, browser, tmp_path):  # noqa: F811 - shared fixture
    """2 GiB of zeros in one line (2 MB gzip) uploaded in the page: one refusal naming the
    file, no server path, the server's peak memory grows < 100 MB, and later reruns do not
    decompress it again (the peak stays put)."""
    import gzip

    from playwright.sync_api import expect

    bomb = tmp_path / "bomb.gz"
    chunk = b"\0" * (16 << 20)
    with gzip.open(bomb, "wb", compresslevel=9) as fh:
        for _ in range(128):
            fh.write(chunk)
    w = open_page(browser, offline_dashboard)
    page = w.page
    expect(page.locator(".st-key-source_choice")).to_be_visible(timeout=SLOW_MS)
    _segment(w, "source_choice", "Replay")
    page.get_by_text("Replay another recording").click()
    page.get_by_text("Upload a file", exact=True).click()
    before = peak_rss_mb(offline_dashboard)
    page.locator('.st-key-replay_upload input[type="file"]').set_input_files(str(bomb))
    refusal = page.get_by_text(re.compile(r"bomb\.gz is not a trade recording"))
    expect(refusal).to_be_visible(timeout=SLOW_MS)
    expect(refusal).to_contain_text(re.compile("MAX_RECORDING_MB|MAX_LINE_BYTES"))
    expect(refusal).not_to_contain_text(str(tmp_path))
    after_once = peak_rss_mb(offline_dashboard)
    assert after_once - before < 100, (before, after_once)
    for tf in ("1m", "1s"):  # full reruns with the upload still in the widget
        _segment(w, "tf", tf)
        _title(w, f"· {tf}")
    expect(refusal).to_be_visible(timeout=SLOW_MS)
    after_reruns = peak_rss_mb(offline_dashboard)
    print(f"server peak RSS {before:.0f} MB → {after_once:.0f} → {after_reruns:.0f}", flush=True)
    assert after_reruns - before < 100
    w.clean("bomb upload")
    close(w)
