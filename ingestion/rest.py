"""Binance USD-M REST client (urllib): exchangeInfo, aggTrades, trades, klines, funding, in limits.

Rate limits are per IP, so one ``RestClient`` is shared by every feed of a process:
it tracks ``X-MBX-USED-WEIGHT-1M`` and pauses before a request that would cross the
budget, and on HTTP 429/418 it pauses *every* caller until ``Retry-After`` has passed.
A 418 ban longer than ``max_retry_after_s`` fails the request rather than hanging.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from formats import Limits, ParseError
from formats.numbers import loads_bounded

__all__ = ["RestClient", "RestError", "RestStats", "kline_weight"]

log = logging.getLogger(__name__)

#: REST bodies: exchangeInfo is a few MB; anything past 32 MiB or nested deeper than JSON's
#: usual limit is refused as invalid, never read whole or decoded into a RecursionError.
_REST_LIMITS = Limits(max_frame_bytes=32 * 1024 * 1024)

#: Request weights from the Binance documentation (see ../shared/docs/binance-usdm.md §4).
WEIGHT_EXCHANGE_INFO = 1
WEIGHT_AGG_TRADES = 20
WEIGHT_TRADES = 5
WEIGHT_PREMIUM_INDEX = 1  # with a symbol (10 without)
#: fundingRate shares a separate 500 requests / 5 min / IP limit; 1 keeps it visible here.
WEIGHT_FUNDING_RATE = 1


def kline_weight(limit: int) -> int:
    """Weight of ``GET /fapi/v1/klines``: 1/2/5/10 for limit <100 / <500 / <=1000 / >1000."""
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    if limit <= 1000:
        return 5
    return 10


class RestError(Exception):
    """A REST request that failed for good. ``status`` is the HTTP status (0: no response);
    ``code`` and ``msg`` are Binance's error fields when the body had them."""

    def __init__(self, url: str, status: int, msg: str, code: int | None = None) -> None:
        path = urllib.parse.urlsplit(url).path
        super().__init__(
            f"GET {path}: HTTP {status}{f' code {code}' if code is not None else ''}: {msg}"
        )
        self.url = url
        self.status = status
        self.code = code
        self.msg = msg


@dataclass(frozen=True, slots=True)
class RestStats:
    """Counters of a ``RestClient``, for the status display."""

    requests: int
    errors: int
    rate_limited: int  # 429 and 418 responses received
    used_weight_1m: int  # last X-MBX-USED-WEIGHT-1M seen
    weight_limit_1m: int
    paused_s: float  # total time callers waited for weight or Retry-After


class RestClient:
    """Thread-safe client for the few public endpoints ingestion needs.

    ``clock`` (seconds since the epoch) and ``sleep`` are parameters so that tests can
    check the weight throttle without waiting a minute; ``stop`` makes every wait
    interruptible (``RestError`` with status 0 is raised when it is set).
    """

    def __init__(
        self,
        base: str,
        *,
        timeout_s: float = 10.0,
        weight_limit_per_min: int = 2400,
        headroom: float = 0.8,
        max_retries: int = 5,
        max_retry_after_s: float = 600.0,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.base = base.rstrip("/")
        self.timeout_s = timeout_s
        self.weight_limit_per_min = weight_limit_per_min
        self.headroom = headroom
        self.max_retries = max_retries
        self.max_retry_after_s = max_retry_after_s
        self._stop = stop or threading.Event()
        self._clock = clock
        self._sleep = sleep or self._stop.wait
        self._lock = threading.Lock()
        self._used_weight = 0
        self._used_minute = -1
        self._blocked_until = 0.0
        self._requests = 0
        self._errors = 0
        self._rate_limited = 0
        self._paused_s = 0.0
        self._opener = urllib.request.build_opener()

    # --- public endpoints --------------------------------------------------------------------
    def exchange_info(self) -> dict[str, Any]:
        """``GET /fapi/v1/exchangeInfo``; also adopts its REQUEST_WEIGHT per-minute limit."""
        info = self.get("/fapi/v1/exchangeInfo", {}, WEIGHT_EXCHANGE_INFO)
        if not isinstance(info, dict) or not isinstance(info.get("symbols"), list):
            raise RestError(self.base + "/fapi/v1/exchangeInfo", 200, "no symbols[] in reply")
        for limit in info.get("rateLimits") or []:
            if (
                isinstance(limit, dict)
                and limit.get("rateLimitType") == "REQUEST_WEIGHT"
                and limit.get("interval") == "MINUTE"
                and limit.get("intervalNum", 1) == 1
                and isinstance(limit.get("limit"), int)
                and limit["limit"] > 0
            ):
                self.weight_limit_per_min = limit["limit"]
        return info

    def agg_trades(
        self,
        symbol: str,
        *,
        from_id: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """``GET /fapi/v1/aggTrades`` rows, oldest first. ``from_id`` is inclusive."""
        params: dict[str, Any] = {"symbol": symbol.upper(), "limit": limit}
        if from_id is not None:
            params["fromId"] = from_id
        if start_ms is not None:
            params["startTime"] = start_ms
        if end_ms is not None:
            params["endTime"] = end_ms
        rows = self.get("/fapi/v1/aggTrades", params, WEIGHT_AGG_TRADES)
        return self._rows(rows, "/fapi/v1/aggTrades")

    def recent_trades(self, symbol: str, *, limit: int = 1000) -> list[dict[str, Any]]:
        """``GET /fapi/v1/trades``: the most recent ``limit`` trades (trade-id space)."""
        rows = self.get(
            "/fapi/v1/trades", {"symbol": symbol.upper(), "limit": limit}, WEIGHT_TRADES
        )
        return self._rows(rows, "/fapi/v1/trades")

    def klines(
        self,
        symbol: str,
        *,
        interval: str = "1m",
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 1500,
    ) -> list[list[Any]]:
        """``GET /fapi/v1/klines`` rows (arrays), oldest first."""
        params: dict[str, Any] = {"symbol": symbol.upper(), "interval": interval, "limit": limit}
        if start_ms is not None:
            params["startTime"] = start_ms
        if end_ms is not None:
            params["endTime"] = end_ms
        rows = self.get("/fapi/v1/klines", params, kline_weight(limit))
        return self._rows(rows, "/fapi/v1/klines")

    def premium_index(self, symbol: str) -> dict[str, Any]:
        """``GET /fapi/v1/premiumIndex?symbol=``: mark price and the current funding rate."""
        path = "/fapi/v1/premiumIndex"
        body = self.get(path, {"symbol": symbol.upper()}, WEIGHT_PREMIUM_INDEX)
        if not isinstance(body, dict):
            raise RestError(self.base + path, 200, f"expected a JSON object, got {body!r:.80}")
        return body

    def funding_rates(
        self, symbol: str, *, start_ms: int, end_ms: int, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """``GET /fapi/v1/fundingRate`` rows (settled funding), oldest first, from ``start_ms``."""
        params = {"symbol": symbol.upper(), "startTime": start_ms, "endTime": end_ms}
        rows = self.get("/fapi/v1/fundingRate", params | {"limit": limit}, WEIGHT_FUNDING_RATE)
        return self._rows(rows, "/fapi/v1/fundingRate")

    def stats(self) -> RestStats:
        with self._lock:
            return RestStats(
                requests=self._requests,
                errors=self._errors,
                rate_limited=self._rate_limited,
                used_weight_1m=self._used_weight,
                weight_limit_1m=self.weight_limit_per_min,
                paused_s=round(self._paused_s, 3),
            )

    # --- machinery ---------------------------------------------------------------------------
    def _rows(self, rows: Any, path: str) -> list[Any]:
        if not isinstance(rows, list):
            raise RestError(self.base + path, 200, f"expected a JSON array, got {rows!r:.80}")
        return rows

    def _pause(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._lock:
            self._paused_s += seconds
        self._sleep(seconds)
        if self._stop.is_set():
            raise RestError(self.base, 0, "stopped")

    def _wait_for_budget(self, weight: int) -> None:
        """Block until ``Retry-After`` has passed and ``weight`` fits in this minute's budget."""
        while True:
            with self._lock:
                now = self._clock()
                minute = int(now // 60)
                if minute != self._used_minute:
                    self._used_minute = minute
                    self._used_weight = 0
                budget = int(self.weight_limit_per_min * self.headroom)
                if now < self._blocked_until:
                    wait_s = self._blocked_until - now
                elif self._used_weight + weight > budget and self._used_weight > 0:
                    # The used-weight counter resets at the start of each minute.
                    wait_s = (minute + 1) * 60 - now + 0.05
                else:
                    self._used_weight += weight  # reserve; the response header corrects it
                    return
            log.info("REST: waiting %.1f s for the rate limit", wait_s)
            self._pause(wait_s)

    def _note_response(self, headers: Any) -> None:
        value = headers.get("X-MBX-USED-WEIGHT-1M") if headers is not None else None
        if value is None:
            return
        try:
            used = int(value)
        except ValueError:
            return
        with self._lock:
            self._used_minute = int(self._clock() // 60)
            self._used_weight = used

    def _retry_after_s(self, headers: Any) -> float:
        value = headers.get("Retry-After") if headers is not None else None
        try:
            return max(0.0, float(value))
        except (TypeError, ValueError):
            return 60.0  # no usable header: a minute is the weight window

    def get(self, path: str, params: dict[str, Any], weight: int) -> Any:
        """GET ``path`` with ``params``; JSON body on 200. Retries 429/418/5xx/network errors."""
        url = f"{self.base}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        delay_s = 0.25
        attempt = 0
        while True:
            attempt += 1
            self._wait_for_budget(weight)
            with self._lock:
                self._requests += 1
            request = urllib.request.Request(url, headers={"Accept": "application/json"})
            try:
                with self._opener.open(request, timeout=self.timeout_s) as response:
                    self._note_response(response.headers)
                    body = response.read(_REST_LIMITS.max_frame_bytes + 1)
                try:
                    return loads_bounded(body, _REST_LIMITS)
                except ParseError as exc:  # not JSON, too deep, too large: never a crash
                    detail = f"invalid JSON ({exc.reason}): {body[:80]!r}"
                    raise RestError(url, 200, detail) from None
            except urllib.error.HTTPError as exc:
                self._note_response(exc.headers)
                body = exc.read() if exc.fp is not None else b""
                code, msg = _binance_error(body, exc.reason)
                if exc.code in (429, 418):
                    retry_after_s = self._retry_after_s(exc.headers)
                    with self._lock:
                        self._rate_limited += 1
                        self._blocked_until = max(
                            self._blocked_until, self._clock() + retry_after_s
                        )
                    log.warning(
                        "REST %s: HTTP %d, Retry-After %.0f s", path, exc.code, retry_after_s
                    )
                    if retry_after_s > self.max_retry_after_s or attempt > self.max_retries:
                        self._count_error()
                        raise RestError(
                            url, exc.code, f"rate limited, Retry-After {retry_after_s:.0f} s", code
                        ) from None
                    continue  # _wait_for_budget honours _blocked_until
                if exc.code >= 500 and attempt <= self.max_retries:
                    log.warning("REST %s: HTTP %d, retrying", path, exc.code)
                    self._pause(delay_s * (0.5 + random.random()))
                    delay_s = min(delay_s * 2, 10.0)
                    continue
                self._count_error()
                raise RestError(url, exc.code, msg, code) from None
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                if self._stop.is_set():
                    raise RestError(url, 0, "stopped") from None
                if attempt <= self.max_retries:
                    log.warning("REST %s: %s, retrying", path, reason)
                    self._pause(delay_s * (0.5 + random.random()))
                    delay_s = min(delay_s * 2, 10.0)
                    continue
                self._count_error()
                raise RestError(url, 0, str(reason)) from None

    def _count_error(self) -> None:
        with self._lock:
            self._errors += 1


def _binance_error(body: bytes, default: str) -> tuple[int | None, str]:
    """Binance error bodies look like ``{"code": -1121, "msg": "Invalid symbol."}``."""
    try:
        data = loads_bounded(body[: _REST_LIMITS.max_frame_bytes], _REST_LIMITS)
    except ParseError:
        return None, str(default)
    if isinstance(data, dict):
        code = data.get("code")
        return (code if isinstance(code, int) else None), str(data.get("msg", default))
    return None, str(default)
