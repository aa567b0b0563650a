"""Funding served by the replay server: ``/fapi/v1/premiumIndex`` and ``/fapi/v1/fundingRate``.

No recording in ``../shared/data/real/`` carries funding data (no ``@markPrice`` frames, no
fundingRate rows), so every served symbol gets the documented default: a constant rate of
``DEFAULT_RATE`` (0.0001, Binance's usual baseline of 0.01 % per settlement) settling every
8 hours at 00:00, 08:00 and 16:00 UTC of the *served* clock (times shifted to now, like the
trades). The mark price of a row is the served trade price at that time (the first print's
for times before the recording starts), so a backtest's funding charge can be checked by hand:
``position × close × 0.0001`` at every settlement inside its span.

Only settlements at or before the replay's present exist (``fundingRate`` never answers the
future); ``premiumIndex`` gives the next one as ``nextFundingTime``. Answers follow Binance's
shapes (see ``formats.funding``); the parameters follow its rules (``limit`` 1..1000, default
100; with no ``startTime``, the most recent rows up to ``endTime``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from replay.server import FakeBinance

__all__ = ["DEFAULT_RATE", "FUNDING_INTERVAL_MS", "funding_rates", "premium_index"]

#: The rate of every served settlement, as Binance writes it.
DEFAULT_RATE = "0.00010000"
#: Settlement period: every 8 h, on the UTC day's 00:00, 08:00 and 16:00.
FUNDING_INTERVAL_MS = 8 * 3_600_000


def _price_at(app: FakeBinance, symbol: str, t_ms: float) -> str:
    """The served price of ``symbol`` at served time ``t_ms`` (the last print at or before it)."""
    static = app.static_klines.get(symbol)
    if static is not None:
        before = [row[4] for row in static if row[0] <= t_ms]
        return str(before[-1] if before else static[0][4])
    timeline = app.timeline
    assert timeline is not None
    view = timeline.views.get((symbol, "agg")) or timeline.views.get((symbol, "trade"))
    if view is None:
        return "0"
    t_ms = min(t_ms, timeline.now_ms())  # never a price from the replay's future
    n = timeline.n_after_time(view, t_ms) if math.isfinite(t_ms) else view.size
    return view.price_of(max(0, n - 1))


def _now_ms(app: FakeBinance) -> int:
    timeline = app.timeline
    assert timeline is not None
    now = timeline.now_ms()
    return (
        int(now) if math.isfinite(now) else timeline.ts_of(next(iter(timeline.views.values())), 0)
    )


def premium_index(app: FakeBinance, symbol: str) -> dict[str, Any]:
    """``GET /fapi/v1/premiumIndex?symbol=``: the served price as mark and index."""
    now = _now_ms(app)
    price = _price_at(app, symbol, now)
    return {
        "symbol": symbol,
        "markPrice": price,
        "indexPrice": price,
        "estimatedSettlePrice": price,
        "lastFundingRate": DEFAULT_RATE,
        "interestRate": "0.00010000",
        "nextFundingTime": (now // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS,
        "time": now,
    }


def funding_rates(
    app: FakeBinance, symbol: str, start_ms: int | None, end_ms: int | None, limit: int | None
) -> list[dict[str, Any]]:
    """``GET /fapi/v1/fundingRate``: settled rows in ``[startTime, endTime]``, oldest first."""
    step = FUNDING_INTERVAL_MS
    limit = min(max(limit or 100, 1), 1000)
    end = min(_now_ms(app), end_ms if end_ms is not None else math.inf)
    last = int(end // step * step)
    first = last - (limit - 1) * step if start_ms is None else -(-start_ms // step) * step
    times = range(first, min(last, first + (limit - 1) * step) + 1, step)
    return [
        {
            "symbol": symbol,
            "fundingTime": t,
            "fundingRate": DEFAULT_RATE,
            "markPrice": _price_at(app, symbol, t),
        }
        for t in times
        if t >= 0
    ]
