"""Error boundaries and small display helpers shared by the page's panels."""

from __future__ import annotations

import contextlib
import logging
import math
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import streamlit as st

from storage import StorageError, UnknownSymbolError, describe

#: Plotly options of every static chart, and the icon of every download button.
PLOT_CONFIG = {"displaylogo": False, "scrollZoom": True}
DL_ICON = ":material/download:"


log = logging.getLogger(__name__)

#: Icon of every "waiting for data" message (Material icons ship with Streamlit's own font).
WAIT_ICON = ":material/hourglass_top:"


def failure(title: str, exc: Exception, quote: Callable[[str], str] = str) -> tuple[str, str]:
    """What a panel shows when it fails: ``(level, text)``, level "info" or "error".

    The text names the panel and the problem, never a traceback; the exception's own words,
    which may quote user input, pass through ``quote`` (``md_escape`` for Markdown). An
    unexpected exception is logged with its traceback.
    """
    if isinstance(exc, UnknownSymbolError):
        return "info", f"{title}: waiting for data — {quote(str(exc))}."
    if isinstance(exc, (StorageError, ValueError)):
        return "error", f"{title}: {quote(str(exc))}"
    log.exception("panel %r failed", title, exc_info=exc)
    return "error", (
        f"{title} could not be shown ({type(exc).__name__}: {quote(_short(exc))}). "
        "The rest of the page is unaffected; details are in the server log."
    )


@contextlib.contextmanager
def panel(title: str) -> Iterator[None]:
    """Run one panel; an exception shows as a short error in that panel, never a traceback.

    ``st.rerun``/``st.stop`` raise ``BaseException`` subclasses and pass through untouched.
    """
    try:
        yield
    except Exception as exc:  # broad on purpose: the boundary: one panel fails, the page lives
        level, text = failure(title, exc, md_escape)
        (st.info if level == "info" else st.error)(text)


def csv_download(label: str, data, file_name: str, key: str, *, where=st, **kw) -> None:
    """The page's one kind of download button: a CSV file, download icon, no rerun on click.

    ``data`` is the text or a callable producing it (computed only when clicked); ``where`` is
    the container or column to draw in; ``kw`` passes on (e.g. ``width``).
    """
    where.download_button(
        label, data, file_name=file_name, mime="text/csv", key=key, icon=DL_ICON,
        on_click="ignore", **kw,
    )  # fmt: skip


def fragment_slot(name: str):
    """A container, drawn by every full run, that holds exactly one fragment.

    Why: Streamlit (1.67) addresses elements by position. When a fragment rerun starts right
    after a full run whose messages are not yet flushed (e.g. timer reruns that queued up while
    a control's callback worked), the server drops that full run's unflushed deltas of the
    fragment (``ForwardMsgQueue.clear(fragment_ids_this_run=...)``). The browser then ends the
    full run without the fragment's block, sweeps the old one away and closes the gap: every
    later sibling moves up one place, the fragment's block lands on its neighbour, and the next
    delta for a path below the moved sibling fails with "Cannot set a node at a delta path" —
    the page goes blank and stays blank. Inside its own slot a swept fragment leaves an empty
    slot behind and nothing else moves.
    """
    return st.container(key=f"slot_{name}")


#: Characters that open Markdown (or Streamlit's ``:icon:``, ``:red[…]`` and ``$math$``)
#: anywhere in a line; the rest of ASCII punctuation only matters at a line's start.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>!:$~|#{}&])")
_MD_LEADING = re.compile(r"^(\d*)([-+=>.)])")
#: Bare addresses GFM turns into links whatever is escaped (``https://…``, ``www.…``,
#: ``name@host``): a zero-width space splits them.
_MD_AUTOLINK = re.compile(r"(?i)(://|www\.|@)")
_ZWSP = "\u200b"


def md_escape(text: str) -> str:
    """``text`` shown literally by Streamlit's Markdown, on one line.

    For any text a user or a file supplied (symbols, file names, URL values, rule names,
    error messages quoting them): every character that could open a link, an image, HTML, a
    ``:material/…:`` icon, a ``:red[…]`` colour or a ``$…$`` formula is backslash-escaped
    (CommonMark); bare web and mail addresses, which GFM links even when escaped, get a
    zero-width space after ``https:``, after ``www`` and before ``@``; line breaks become spaces.
    """
    flat = " ".join(str(text).split())
    flat = _MD_AUTOLINK.sub(lambda m: _split(m.group(1)), flat)
    out = _MD_SPECIAL.sub(r"\\\1", flat)
    return _MD_LEADING.sub(r"\1\\\2", out)


def _split(found: str) -> str:
    if found == "@":
        return _ZWSP + "@"
    return found[:-1] + _ZWSP + found[-1] if found.endswith(".") else found[:1] + _ZWSP + found[1:]


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def db_label(db: str) -> str:
    """A database for display: a file's name, or a URL with its password masked."""
    if "://" in db and not db.startswith("sqlite:"):
        return describe(db)
    return Path(db.removeprefix("sqlite:///")).name


def fmt_time(ms: int | float | None, *, millis: bool = False) -> str:
    """UTC wall time of ``ms``: ``23:59:58`` (or ``23:59:58.123``); ``—`` for None."""
    if ms is None or (isinstance(ms, float) and math.isnan(ms)):
        return "—"
    dt = datetime.fromtimestamp(float(ms) / 1000.0, UTC)
    return dt.strftime("%H:%M:%S.%f")[:-3] if millis else dt.strftime("%H:%M:%S")


def fmt_datetime(ms: int | float | None) -> str:
    if ms is None:
        return "—"
    return datetime.fromtimestamp(float(ms) / 1000.0, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_num(value: float | None, digits: int = 4) -> str:
    """A metric value: ``—`` while undefined, ``∞`` for infinity, else ``digits`` significant."""
    if value is None:
        return "—"
    v = float(value)
    if math.isnan(v):
        return "—"
    if math.isinf(v):
        return "∞"
    if abs(v) >= 1e4:
        return f"{v:,.2f}"
    return f"{v:.{digits}g}"


def fmt_age(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:,.0f} days"


CSS = """
<style>
/* tighter key-figure tiles */
div[data-testid="stMetric"] {
  background: color-mix(in srgb, currentColor 4%, transparent);
  border: 1px solid color-mix(in srgb, currentColor 12%, transparent);
  border-radius: 8px; padding: 6px 8px 4px 8px;
}
div[data-testid="stMetricValue"] { font-size: 1.1rem; font-variant-numeric: tabular-nums; }
div[data-testid="stMetricLabel"] p { font-size: 0.78rem; opacity: 0.8; }
/* the live panel's key figures: one HTML block (ui/live.py key_figures_html), same look */
.pd-kfs { display: grid; grid-template-columns: repeat(auto-fit, minmax(5rem, 1fr));
  gap: 0.5rem; margin-bottom: 0.5rem; }
.pd-kf {
  background: color-mix(in srgb, currentColor 4%, transparent);
  border: 1px solid color-mix(in srgb, currentColor 12%, transparent);
  border-radius: 8px; padding: 6px 8px 4px 8px; cursor: help; min-width: 0;
}
.pd-kf-label { font-size: 0.78rem; opacity: 0.8; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; }
.pd-kf-value { font-size: 1.1rem; font-variant-numeric: tabular-nums; white-space: nowrap;
  overflow: hidden; text-overflow: ellipsis; }
.st-key-last_update p { font-variant-numeric: tabular-nums; }
.block-container { padding-top: 2.2rem; }
.st-key-tidy_browser { display: none; }
</style>
"""


def inject_css() -> None:
    st.markdown(CSS, unsafe_allow_html=True)


#: Streamlit 1.67's frontend records every change of a script run's state with
#: ``performance.mark`` (named after the state) and every run with ``performance.measure``
#: ("script-run-cycle"), and never clears either: the browser keeps every entry, about 160 a
#: minute (20 kB) for a tab refreshing twice a second, some 30 MB a day on a desk's screen
#: (docs/viewers.md, the memory soak). This page-level component clears exactly those entries
#: every 15 s. Streamlit only uses the newest marks (to measure the run that just ended) and
#: ignores a measure whose mark was cleared.
_TIDY_JS = """
const MARKS = ["notRunning", "running", "rerunRequested", "stopRequested", "compilationError"];
export default function () {
  if (window.__pairsDeskTidy) return;
  window.__pairsDeskTidy = setInterval(() => {
    for (const name of MARKS) performance.clearMarks(name);
    performance.clearMeasures("script-run-cycle");
  }, 15000);
}
"""
_tidy = st.components.v2.component("pairs_desk_tidy_browser", js=_TIDY_JS)


def tidy_browser() -> None:
    """Keep the tab's memory flat over days: see :data:`_TIDY_JS`. Invisible; once per page."""
    _tidy(key="tidy_browser")
