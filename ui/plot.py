"""The live charts: one Streamlit component drawing a grid of Plotly charts that keep the zoom.

Why not ``st.plotly_chart``: in Streamlit 1.67 its element id hashes the figure spec, so every
data refresh gives the chart a new identity; the browser remounts it and the user's zoom, pan
and hidden legend items are lost, whatever the figure's ``uirevision``. This component keeps
one identity per ``key`` (Streamlit's v2 components use the key as their identity), and its
JavaScript updates each existing chart with ``Plotly.react``, which preserves every UI state
whose ``uirevision`` is unchanged — the documented Plotly mechanism. A figure travels as
Plotly's own JSON (numpy arrays as base64 typed arrays, so a refresh stays small).

Why one component for the whole grid: every element costs the server work on every refresh
of every tab (Streamlit registers each component call as a widget and sends a message per
element); the six live charts as six components in three ``st.columns(2)`` were about a
quarter of the server's CPU per further tab (docs/viewers.md). One component, one message,
one payload built once per data version: the grid is laid out by CSS (two columns, one on a
narrow screen) and a chart still warming up is a note in its cell.

Plotly.js itself is loaded once per page from the ``plotly.min.js`` that ships with the
installed ``plotly`` package (no CDN, works offline), served by Streamlit's component file
route. Colours and fonts follow the Streamlit theme (light or dark) at draw time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plotly
import plotly.graph_objects as go
import plotly.io as pio
import streamlit as st
import streamlit.components.v1 as components_v1

#: Plotly's bundled browser library (the version that matches the Python package).
_PLOTLY_DIR = Path(plotly.__file__).resolve().parent / "package_data"

# A v1 component declared with a local path makes Streamlit serve that folder's files at
# ``component/<name>/<file>``; it is never rendered, only used to serve plotly.min.js.
_ASSET = components_v1.declare_component("plotly_asset", path=str(_PLOTLY_DIR))
PLOTLY_JS_PATH = f"component/{_ASSET.name}/plotly.min.js"

_JS = (Path(__file__).with_name("plot.js")).read_text(encoding="utf-8")

_CSS = """
.pd-grid { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 1rem; }
@media (max-width: 640px) { .pd-grid { grid-template-columns: minmax(0, 1fr); } }
.pd-cell { min-width: 0; }
.pd-plot { width: 100%; min-height: 40px; }
.pd-note { border-radius: 0.5rem; padding: 1rem; line-height: 1.5;
  background: rgba(28, 131, 225, 0.1); color: inherit; }
.pd-note[data-level="error"] { background: rgba(255, 43, 43, 0.09); }
"""

_component = st.components.v2.component(
    "pairs_desk_chart_grid",
    js=_JS.replace("__LIB__", PLOTLY_JS_PATH),
    css=_CSS,
    isolate_styles=False,  # Plotly styles its modebar and hover boxes from document <style>
)

DEFAULT_CONFIG: dict[str, Any] = {
    "displaylogo": False,
    "scrollZoom": True,
    "responsive": True,
    "showSendToCloud": False,
    "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d", "sendChartToCloud"],
}


def figure_payload(fig: go.Figure, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """One chart as the component draws it: Plotly JSON (typed arrays base64), height, config."""
    spec = pio.to_json(fig, validate=False, engine="json")
    height = int(fig.layout.height or 300)
    return {
        "spec": spec,
        "height": height,
        "config": config or DEFAULT_CONFIG,
        "revision": str(fig.layout.uirevision or ""),
    }


@dataclass(frozen=True)
class Cell:
    """One cell of the grid: a chart (``chart`` is a :func:`figure_payload`) or a note.

    A note is plain text (never HTML or Markdown: it may quote a symbol name, which is user
    input), shown in the cell instead of the chart: what a chart warming up waits for
    (``level="info"``) or why it could not be drawn (``level="error"``). ``title`` names the
    cell for screen readers; ``key`` names it in the browser (``[data-chart=<key>]``).
    """

    key: str
    title: str
    chart: dict[str, Any] | None = None
    note: str = ""
    level: str = "info"


@dataclass(frozen=True)
class Payload:
    """The grid as the component receives it: its cells as UTF-8 JSON bytes.

    Bytes, not a dict: Streamlit serialises a dict passed to a component (and again for the
    element's identity) on every call, i.e. on every refresh of every tab; bytes are copied as
    they are. Built once per data version and shared by every tab (``ui.live``), a refresh of
    the grid costs no JSON work at all (docs/viewers.md). ``ui/plot.js`` decodes them.
    """

    data: bytes


def encode_grid(cells: list[Cell]) -> Payload:
    doc = {
        "cells": [
            {"key": c.key, "title": c.title, "note": c.note, "level": c.level, **(c.chart or {})}
            for c in cells
        ]
    }
    return Payload(json.dumps(doc).encode())


def show_grid(payload: Payload, key: str) -> None:
    """Draw an :func:`encode_grid` under a stable ``key``; later calls update it in place:
    a chart whose figure is unchanged is not touched, the others keep their zoom."""
    _component(key=key, data=payload.data)


def decode_grid(data: bytes | str) -> list[dict[str, Any]]:
    """The cells of a payload as sent (for tests and the benchmark's thin viewers)."""
    return json.loads(data)["cells"]
