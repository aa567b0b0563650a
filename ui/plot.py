"""Live Plotly charts that keep the user's zoom: a tiny Streamlit component around Plotly.react.

Why not ``st.plotly_chart``: in Streamlit 1.67 its element id hashes the figure spec, so every
data refresh gives the chart a new identity; the browser remounts it and the user's zoom, pan
and hidden legend items are lost, whatever the figure's ``uirevision``. This component keeps
one identity per ``key`` (Streamlit's v2 components use the key as their identity), and its
JavaScript updates the existing chart with ``Plotly.react``, which preserves every UI state
whose ``uirevision`` is unchanged — the documented Plotly mechanism. The figure travels as
Plotly's own JSON (numpy arrays as base64 typed arrays, so a refresh stays small).

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
.pd-plot { width: 100%; min-height: 40px; }
"""

_component = st.components.v2.component(
    "pairs_desk_live_plot",
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
    """What the component receives: Plotly JSON (typed arrays base64), height, config."""
    spec = pio.to_json(fig, validate=False, engine="json")
    height = int(fig.layout.height or 300)
    return {
        "spec": spec,
        "height": height,
        "config": config or DEFAULT_CONFIG,
        "revision": str(fig.layout.uirevision or ""),
    }


@dataclass(frozen=True)
class Payload:
    """One chart as the component receives it: :func:`figure_payload` as UTF-8 JSON bytes.

    Bytes, not the dict: Streamlit serialises a dict passed to a component (and again for the
    element's identity) on every call, i.e. on every refresh of every tab; bytes are copied as
    they are. Built once per data version and shared by every tab (``ui.live``), a refresh of
    a chart then costs no JSON work at all (docs/viewers.md). ``ui/plot.js`` decodes them.
    """

    data: bytes
    height: int


def encode_payload(fig: go.Figure, config: dict[str, Any] | None = None) -> Payload:
    payload = figure_payload(fig, config)
    return Payload(json.dumps(payload).encode(), payload["height"])


def show_payload(payload: Payload, key: str) -> None:
    """Draw an :func:`encode_payload` under a stable ``key``; later calls update it in place."""
    _component(key=key, data=payload.data, height=payload.height)


def live_chart(fig: go.Figure, key: str, config: dict[str, Any] | None = None) -> None:
    """Draw ``fig`` under a stable ``key``; later calls with the same key update it in place."""
    show_payload(encode_payload(fig, config), key)


def payload_bytes(fig: go.Figure) -> int:
    """Size of one chart's payload as sent (for the benchmark)."""
    return len(json.dumps(figure_payload(fig)))
