"""The replay server's REST routes, answered from the same ``Timeline`` as the WebSocket.

``GET /fapi/v1/exchangeInfo``, ``/fapi/v1/aggTrades`` (by ``fromId`` or by time),
``/fapi/v1/trades`` (recent), ``/fapi/v1/klines`` (1m/3m/5m/15m/30m/1h, built from the served
trades; symbols given as fixed ``static_klines`` rows answer 1m from those), ``/fapi/v1/time``,
``/fapi/v1/ping``, and funding: ``/fapi/v1/premiumIndex`` and ``/fapi/v1/fundingRate``
(``replay.funding``: a documented default, recordings carry none). Request weights are
counted per minute and returned in ``X-MBX-USED-WEIGHT-1M``; over the limit gives 429 with
``Retry-After``. Errors are Binance's ``{"code": .., "msg": ..}`` bodies. Faults
(``replay.faults``) enter only through ``Faults.rest_refusal`` and a few reads of a server
started with them.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from replay import funding
from replay.timeline import SymbolView

if TYPE_CHECKING:
    from replay.server import FakeBinance

__all__ = ["INTERVALS_MS", "answer_rest"]

Reply = tuple[int, Any, dict[str, str]]

#: Kline intervals served from the trades, in ms.
INTERVALS_MS = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
}

#: Request weight of each route (klines: by ``limit``, see ``_weight``).
_WEIGHTS = {
    "/fapi/v1/exchangeInfo": 1,
    "/fapi/v1/aggTrades": 20,
    "/fapi/v1/trades": 5,
    "/fapi/v1/time": 1,
    "/fapi/v1/ping": 1,
    "/fapi/v1/premiumIndex": 1,  # 10 without a symbol (see _weight)
    "/fapi/v1/fundingRate": 1,
}
_DATA_PATHS = ("/fapi/v1/aggTrades", "/fapi/v1/trades", "/fapi/v1/klines")


def _err(status: int, code: int, msg: str) -> Reply:
    return status, {"code": code, "msg": msg}, {}


def _int_param(params: dict[str, str], name: str) -> int | None:
    if name not in params:
        return None
    try:
        return int(params[name])
    except ValueError:
        raise _BadRequest(-1100, f"Illegal characters found in parameter '{name}'.") from None


class _BadRequest(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code, self.msg = code, msg


def answer_rest(app: FakeBinance, path: str, params: dict[str, str]) -> Reply:
    """``(status, JSON body, extra headers)`` of ``GET path?params``."""
    weight = _weight(path, params)
    if weight is None:
        return _err(404, -1, f"unknown endpoint {path}")
    used, over = app.charge_weight(weight)
    headers = {"X-MBX-USED-WEIGHT-1M": str(used)}
    if app.faults is not None:
        refusal = app.faults.rest_refusal(path in _DATA_PATHS, over)
        if refusal is not None:
            status, body, extra = refusal
            return status, body, {**headers, **extra}
    if over:
        headers["Retry-After"] = str(int(60 - time.time() % 60) + 1)
        return 429, {"code": -1003, "msg": "Too many requests."}, headers
    try:
        return 200, _route(app, path, params), headers
    except _BadRequest as exc:
        status, body, _ = _err(400, exc.code, exc.msg)
        return status, body, headers


def _weight(path: str, params: dict[str, str]) -> int | None:
    """Binance's request weight of ``path`` (None: no such route)."""
    if path == "/fapi/v1/klines":
        limit = _safe_int(params.get("limit"), 500)
        return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10
    if path == "/fapi/v1/premiumIndex" and not params.get("symbol"):
        return 10
    return _WEIGHTS.get(path)


def _route(app: FakeBinance, path: str, params: dict[str, str]) -> Any:
    """The body of a 200 answer; ``_BadRequest`` for a 400."""
    timeline = app.timeline
    assert timeline is not None
    if path == "/fapi/v1/exchangeInfo":
        return _exchange_info(app)
    if path in ("/fapi/v1/time", "/fapi/v1/ping"):
        return {"serverTime": int(time.time() * 1000)} if path.endswith("time") else {}
    if path in ("/fapi/v1/premiumIndex", "/fapi/v1/fundingRate"):
        return _funding(app, path, params)
    symbol = params.get("symbol")
    if not symbol:
        raise _BadRequest(-1102, "Mandatory parameter 'symbol' was not sent.")
    symbol = symbol.upper()
    if symbol in app.static_klines and path == "/fapi/v1/klines":
        return _static_klines(app, symbol, params)
    view = timeline.views.get((symbol, "trade" if path == "/fapi/v1/trades" else "agg"))
    if symbol not in timeline.recording.symbols:
        raise _BadRequest(-1121, "Invalid symbol.")
    if view is None:
        return []  # an aggregate-only recording has no trade view
    if path == "/fapi/v1/aggTrades":
        body = _agg_trades(app, view, params)
        faults = app.faults
        if body and "fromId" in params and faults is not None and faults.take("rest_bad_rows"):
            body.append({"a": "x"})
        return body
    if path == "/fapi/v1/trades":
        limit = min(max(_int_param(params, "limit") or 500, 1), 1000)
        end = timeline.published_end(view)
        return [timeline.rest_row(view, n) for n in range(max(0, end - limit), end)]
    return _klines(app, view, params)


def _funding(app: FakeBinance, path: str, params: dict[str, str]) -> Any:
    """premiumIndex (one symbol, or every symbol without one) and fundingRate history."""
    known = sorted({*app.recording.symbols, *app.static_klines})
    symbol = params.get("symbol", "").upper()
    if symbol and symbol not in known:
        raise _BadRequest(-1121, "Invalid symbol.")
    if path == "/fapi/v1/premiumIndex":
        if not symbol:
            return [funding.premium_index(app, s) for s in known]
        return funding.premium_index(app, symbol)
    if not symbol:
        raise _BadRequest(-1102, "Mandatory parameter 'symbol' was not sent.")
    start, end = _int_param(params, "startTime"), _int_param(params, "endTime")
    return funding.funding_rates(app, symbol, start, end, _int_param(params, "limit"))


def _safe_int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _exchange_info(app: FakeBinance) -> dict[str, Any]:
    entries = []
    delisted = app.faults.delisted if app.faults is not None else set()
    for symbol in [*app.recording.symbols, *app.static_klines]:
        status = "SETTLING" if symbol in delisted else "TRADING"
        entries.append(_symbol_entry({"symbol": symbol, "status": status}))
    for extra in app.faults.extra_symbols if app.faults is not None else []:
        entries.append(_symbol_entry(extra))
    return {
        "timezone": "UTC",
        "serverTime": int(time.time() * 1000),
        "rateLimits": [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": app.weight_limit_per_min,
            },
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
        ],
        "exchangeFilters": [],
        "symbols": entries,
    }


def _symbol_entry(overrides: dict[str, Any]) -> dict[str, Any]:
    symbol = overrides["symbol"]
    quote = "USDT" if symbol.endswith("USDT") else "USDC" if symbol.endswith("USDC") else "USDT"
    entry = {
        "symbol": symbol,
        "pair": symbol,
        "contractType": "PERPETUAL",
        "status": "TRADING",
        "baseAsset": symbol[: -len(quote)] if symbol.endswith(quote) else symbol,
        "quoteAsset": quote,
        "marginAsset": quote,
        "pricePrecision": 2,
        "quantityPrecision": 3,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "tickSize": "0.10",
                "minPrice": "0.10",
                "maxPrice": "1000000",
            },
            {"filterType": "LOT_SIZE", "stepSize": "0.001", "minQty": "0.001", "maxQty": "1000"},
        ],
    }
    entry.update(overrides)
    return entry


def _agg_trades(app: FakeBinance, view: SymbolView, params: dict[str, str]) -> list[dict[str, Any]]:
    timeline = app.timeline
    assert timeline is not None
    limit = min(max(_int_param(params, "limit") or 500, 1), 1000)
    from_id = _int_param(params, "fromId")
    start = _int_param(params, "startTime")
    end = _int_param(params, "endTime")
    if start is not None and end is not None and end - start >= 3_600_000:
        raise _BadRequest(-1127, "More than 1 hours between startTime and endTime.")
    published = timeline.published_end(view)
    # A fault: REST no longer has ids below this (history expired).
    min_id = app.faults.rest_min_id.get(view.symbol) if app.faults is not None else None
    if from_id is not None:
        n = view.n_of_id(from_id, timeline.loop)
        if min_id is not None:
            n = max(n, view.n_of_id(min_id, timeline.loop))
        ns: Iterable[int] = range(n, min(published, n + limit))
        if end is not None:
            ns = (m for m in ns if timeline.ts_of(view, m) <= end)
    elif start is not None or end is not None:
        if start is None:
            start = end - 3_600_000 + 1  # type: ignore[operator]
        n = timeline.n_at_or_after_time(view, start)
        if min_id is not None:
            n = max(n, view.n_of_id(min_id, timeline.loop))
        stop_n = published
        if end is not None:
            stop_n = min(stop_n, timeline.n_after_time(view, end))
        ns = range(n, min(stop_n, n + limit))
    else:
        lo = max(0, published - limit)
        if min_id is not None:
            lo = max(lo, view.n_of_id(min_id, timeline.loop))
        ns = range(lo, published)
    return [timeline.rest_row(view, m) for m in ns]


def _klines(app: FakeBinance, view: SymbolView, params: dict[str, str]) -> list[list[Any]]:
    """Klines built from the served aggregates; minutes without trades are flat bars."""
    timeline = app.timeline
    assert timeline is not None
    interval = params.get("interval", "")
    if interval not in INTERVALS_MS:
        raise _BadRequest(-1120, "Invalid interval.")
    step = INTERVALS_MS[interval]
    limit = min(max(_int_param(params, "limit") or 500, 1), 1500)
    published = timeline.published_end(view)
    if published == 0:
        return []
    first_ts = timeline.ts_of(view, 0)
    last_ts = timeline.ts_of(view, published - 1)
    start = _int_param(params, "startTime")
    end = _int_param(params, "endTime")
    lo = max(first_ts // step * step, (start // step * step) if start is not None else 0)
    hi = min(last_ts // step * step, (end // step * step) if end is not None else last_ts)
    if (start is None and end is not None) or start is None:
        lo = max(first_ts // step * step, hi - (limit - 1) * step)
    hi = min(hi, lo + (limit - 1) * step)
    if hi < lo:
        return []
    n = timeline.n_at_or_after_time(view, lo)
    rows: list[list[Any]] = []
    prev_close: Decimal | None = None
    if n > 0:
        prev_close = Decimal(view.price_of(n - 1))
    for open_ms in range(lo, hi + step, step):
        o = h = lo_p = c = prev_close
        vol = quote = tb_vol = tb_quote = Decimal(0)
        count = 0
        while n < published and timeline.ts_of(view, n) < open_ms + step:
            i = n % view.size
            p, q = Decimal(view.price_of(n)), Decimal(view.cols.qty[i])
            if count == 0:
                o = h = lo_p = p
            h, lo_p, c = max(h, p), min(lo_p, p), p  # type: ignore[type-var]
            vol += q
            quote += p * q
            if not view.cols.buyer_maker[i]:
                tb_vol += q
                tb_quote += p * q
            count += view.cols.last_id[i] - view.cols.first_id[i] + 1
            n += 1
        if o is None:
            continue  # before the first trade: no bar
        prev_close = c
        rows.append(
            [
                open_ms,
                str(o),
                str(h),
                str(lo_p),
                str(c),
                str(vol),
                open_ms + step - 1,
                str(quote),
                count,
                str(tb_vol),
                str(tb_quote),
                "0",
            ]
        )
    return rows


def _static_klines(app: FakeBinance, symbol: str, params: dict[str, str]) -> list[list[Any]]:
    """1m rows of a static-kline symbol with open time in [startTime, endTime], at most limit."""
    if app.faults is not None and symbol in app.faults.delisted:
        raise _BadRequest(-1121, "Invalid symbol.")
    if params.get("interval", "") != "1m":
        raise _BadRequest(-1120, "Invalid interval.")
    limit = min(max(_int_param(params, "limit") or 500, 1), 1500)
    rows = app.static_klines[symbol]
    times = [r[0] for r in rows]
    start, end = _int_param(params, "startTime"), _int_param(params, "endTime")
    hi = len(rows) if end is None else bisect.bisect_right(times, end)
    lo = max(0, hi - limit) if start is None else bisect.bisect_left(times, start)
    return rows[lo : min(hi, lo + limit)]
