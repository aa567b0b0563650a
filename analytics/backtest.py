"""Backtest of the z-score mean-reversion rule on a pair, in quote currency, next-bar execution."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from analytics._validate import as_series, check_finite, pair_arrays, readonly
from analytics.prices import SECONDS_PER_YEAR

#: Columns of an exported equity curve (:meth:`BacktestResult.equity_frame`).
EQUITY_COLUMNS = ("time", "x", "y", "beta", "zscore", "position", "equity")


@dataclass(frozen=True, slots=True)
class Trade:
    """One round trip of the spread.

    Attributes
    ----------
    side : str
        ``"short"``: sold 1 x, bought ``beta`` y (spread expected to fall);
        ``"long"``: bought 1 x, sold ``beta`` y.
    signal_bar, entry_bar : int
        Bar whose z-score triggered the entry, and the next bar, at whose close it filled.
    exit_bar : int or None
        Bar at whose close the position was closed; None if still open at the end.
    beta : float
        Hedge ratio frozen at entry (the one known at the signal bar).
    qty_x, qty_y : float
        Signed quantities held (``−1, +beta`` short; ``+1, −beta`` long).
    entry_x, entry_y, exit_x, exit_y : float
        Fill prices (exit prices are the last closes for an open trade).
    gross_pnl, fees, pnl : float
        P&L before fees, fees paid (entry, plus exit if closed), and net P&L
        (``gross_pnl − fees + funding_pnl``), in quote currency.
    exit_reason : str
        ``"revert"`` (z crossed ``exit_z``), ``"stop"`` (|z| beyond ``stop_z``) or
        ``"open"``.
    funding_pnl : float
        Funding received (> 0) or paid (< 0) while the trade was open; 0 without funding.
    """

    side: str
    signal_bar: int
    entry_bar: int
    exit_bar: int | None
    beta: float
    qty_x: float
    qty_y: float
    entry_x: float
    entry_y: float
    exit_x: float
    exit_y: float
    gross_pnl: float
    fees: float
    pnl: float
    exit_reason: str
    funding_pnl: float = 0.0


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """Outcome of :func:`backtest`.

    Attributes
    ----------
    trades : tuple[Trade, ...]
        Every round trip, in order (the last may be open).
    equity : numpy.ndarray
        Equity per bar in quote currency: realised + mark-to-market P&L − fees paid,
        starting from 0.
    position : numpy.ndarray
        Spread position held after each bar's close: +1 long, −1 short, 0 flat.
    total_pnl : float
        ``equity[-1]`` (an open trade counts at its mark-to-market, without exit fee).
    n_trades : int
        Trades entered (closed and open).
    win_rate : float
        Share of closed trades with positive net P&L; NaN without closed trades.
    max_drawdown : float
        Largest fall of equity from a previous peak (≥ 0, quote currency).
    sharpe : float
        Mean / standard deviation of per-bar equity changes (not annualised); NaN if
        equity never changed.
    sharpe_annualised : float or None
        ``sharpe · sqrt(bars per 365-day year)`` when ``bar_seconds`` was given.
    fees_paid : float
        All fees, quote currency.
    skipped_entries : int
        Entry signals dropped by the liquidity filter.
    funding_pnl : float
        All funding received (> 0) or paid (< 0), quote currency; 0 without funding rates.
    funding_pnl_x, funding_pnl_y : float
        The part of ``funding_pnl`` settled on each leg (their sum is ``funding_pnl``).

    Notes
    -----
    P&L is per one unit of x; scale linearly for size. Sharpe here is of P&L in quote
    currency per bar, not of returns on capital (the rule's margin is not modelled).
    """

    trades: tuple[Trade, ...]
    equity: np.ndarray
    position: np.ndarray
    total_pnl: float
    n_trades: int
    win_rate: float
    max_drawdown: float
    sharpe: float
    sharpe_annualised: float | None
    fees_paid: float
    skipped_entries: int
    funding_pnl: float = 0.0
    funding_pnl_x: float = 0.0
    funding_pnl_y: float = 0.0

    def trades_frame(self) -> pd.DataFrame:
        """The trades as a DataFrame, one row per trade (columns = :class:`Trade` fields)."""
        cols = list(Trade.__dataclass_fields__)
        return pd.DataFrame([asdict(t) for t in self.trades], columns=cols)

    def equity_frame(
        self, time: object, x: object, y: object, beta: object, zscore: object
    ) -> pd.DataFrame:
        """The equity curve as exported (the page's CSV, ``python -m analytics backtest
        --out``): one row per bar, columns :data:`EQUITY_COLUMNS`; the inputs are the bars'
        labels and the series the backtest ran on, each as long as :attr:`equity`."""
        columns = (time, x, y, beta, zscore, self.position, self.equity)
        return pd.DataFrame(
            {name: np.asarray(v) for name, v in zip(EQUITY_COLUMNS, columns, strict=True)}
        )


def _optional(name: str, values: object | None, n: int) -> np.ndarray | None:
    if values is None:
        return None
    a = as_series(name, values)
    if a.size != n:
        raise ValueError(f"{name} has {a.size} bars but prices have {n}")
    check_finite(name, a)
    return a


def _funding(fx: object | None, fy: object | None, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Both legs' per-bar rates (a missing leg pays none), or None when neither is given."""
    if fx is None and fy is None:
        return None
    zero = np.zeros(n)
    return (
        zero if fx is None else _optional("funding_x", fx, n),
        zero if fy is None else _optional("funding_y", fy, n),
    )


def _threshold(name: str, value: float | None, *, allow_zero: bool = True) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'≥' if allow_zero else '>'} 0, got {value!r}")
    return float(value)


def backtest(
    x: object,
    y: object,
    zscore: object,
    beta: object,
    *,
    entry_z: float = 2.0,
    exit_z: float = 0.0,
    stop_z: float | None = None,
    fee_rate: float = 0.0005,
    volume_x: object | None = None,
    volume_y: object | None = None,
    trades_x: object | None = None,
    trades_y: object | None = None,
    min_quote_volume: float | None = None,
    min_trades: int | None = None,
    bar_seconds: float | None = None,
    funding_x: object | None = None,
    funding_y: object | None = None,
) -> BacktestResult:
    """Simulate the z-score mean-reversion rule on a pair.

    Parameters
    ----------
    x, y : array_like
        Close prices of the dependent leg x and the hedge leg y (fills happen at closes).
    zscore, beta : array_like
        Per-bar spread z-score and hedge ratio from any method; NaN means "undefined, do
        nothing". Each value must use only bars up to its own (all ``analytics`` methods do).
    entry_z : float
        Enter when ``z > entry_z`` (short the spread) or ``z < −entry_z`` (long). Default 2.
    exit_z : float
        Close a short when ``z ≤ exit_z`` and a long when ``z ≥ −exit_z``. Default 0: exit
        when z crosses zero. Must be below ``entry_z``.
    stop_z : float or None
        Also close when ``|z| > stop_z`` against the position (must exceed ``entry_z``).
        After a stop, the same side is not re-entered until ``|z|`` is back below
        ``entry_z``.
    fee_rate : float
        Taker fee per leg per side, as a fraction of notional. Default 0.0005 (0.05 %).
    volume_x, volume_y, trades_x, trades_y : array_like or None
        Per-bar base volumes and trade counts of each leg, for the liquidity filter.
    min_quote_volume : float or None
        Skip entries when either leg's quote volume (close × volume) on the signal bar is
        below this.
    min_trades : int or None
        Skip entries when either leg has fewer trades than this on the signal bar.
    bar_seconds : float or None
        Bar length, for the annualised Sharpe.
    funding_x, funding_y : array_like or None
        Per-bar funding rates of each leg, charged at that bar's close (0 where none
        settles; :func:`analytics.funding.funding_per_bar` places a rate history on bars).
        None (the default) charges no funding.

    Returns
    -------
    BacktestResult

    Raises
    ------
    ValueError
        Unequal lengths, non-finite prices, bad thresholds (``exit_z ≥ entry_z``,
        ``stop_z ≤ entry_z``, negatives), or a liquidity threshold without the data it needs.

    Notes
    -----
    A signal seen at bar t's close is filled at bar t+1's close: no same-bar look-ahead.
    Short the spread = sell 1 x and buy ``beta`` y, so its P&L is
    ``−(x_exit − x_entry) + beta (y_exit − y_entry)``: it earns when ``x − beta y`` falls
    back. ``beta`` is frozen at entry. Fees: ``fee_rate × (|qty_x| x + |qty_y| y)`` at entry
    and at exit. One action per bar; the liquidity filter reads the signal bar (what is
    known when deciding).

    Funding: at bar t, after that bar's fill, a position of ``q`` units of a leg pays
    ``q × close_t × rate_t`` (longs pay a positive rate, shorts receive it; a negative rate
    reverses both). It enters equity, the trade's ``funding_pnl`` and its net ``pnl``.
    """
    xa, ya = pair_arrays(x, y, min_len=1)
    rules = _Rules.checked(
        xa, ya, zscore, beta, entry_z, exit_z, stop_z, fee_rate, min_quote_volume, min_trades
    )
    liquidity = _Liquidity.checked(xa, ya, volume_x, volume_y, trades_x, trades_y, rules)
    if bar_seconds is not None and not (math.isfinite(bar_seconds) and bar_seconds > 0):
        raise ValueError(f"bar_seconds must be positive, got {bar_seconds!r}")
    book = _Book(xa, ya, rules.fee, _funding(funding_x, funding_y, xa.size))
    n = xa.size
    pending: tuple[str, int, float, str] | None = None  # (action, signal bar, beta, reason)
    blocked = 0  # side not to re-enter after a stop until |z| < entry
    skipped = 0
    for t in range(n):
        if pending is not None:
            book.fill(t, *pending)
            pending = None
        book.charge_funding(t)
        book.mark(t)
        zt = rules.z[t]
        if t + 1 >= n or math.isnan(zt):
            continue
        if blocked and abs(zt) < rules.entry:
            blocked = 0
        pending, blocked, skip = rules.decide(t, book.side, blocked, liquidity)
        skipped += skip
    book.close_open()
    return _result(book, skipped, bar_seconds)


@dataclass(frozen=True, slots=True)
class _Rules:
    """The validated thresholds and signals of one backtest (see :func:`backtest`)."""

    z: np.ndarray
    beta: np.ndarray
    entry: float
    exit: float
    stop: float | None
    fee: float
    min_quote_volume: float | None
    min_trades: float | None

    @classmethod
    def checked(
        cls, xa, ya, zscore, beta, entry_z, exit_z, stop_z, fee_rate, min_qv, min_tr
    ) -> _Rules:
        n = xa.size
        z = as_series("zscore", zscore)
        b = as_series("beta", beta)
        if z.size != n or b.size != n:
            raise ValueError(f"zscore and beta must have {n} bars like the prices")
        if np.isinf(z).any() or np.isinf(b).any():
            raise ValueError("zscore and beta must not be infinite (NaN marks undefined bars)")
        entry_f = _threshold("entry_z", entry_z, allow_zero=False)
        exit_f = _threshold("exit_z", exit_z)
        stop_f = _threshold("stop_z", stop_z, allow_zero=False)
        fee = _threshold("fee_rate", fee_rate)
        if exit_f >= entry_f:
            raise ValueError(f"exit_z ({exit_f}) must be below entry_z ({entry_f})")
        if stop_f is not None and stop_f <= entry_f:
            raise ValueError(f"stop_z ({stop_f}) must be above entry_z ({entry_f})")
        return cls(
            z,
            b,
            entry_f,
            exit_f,
            stop_f,
            fee,
            _threshold("min_quote_volume", min_qv),
            _threshold("min_trades", min_tr),
        )

    def decide(self, t: int, side: int, blocked: int, liquidity: _Liquidity):
        """What bar ``t``'s close asks for: ``(pending action or None, blocked, skipped 0/1)``."""
        zt = self.z[t]
        if side == 0:
            want = -1 if zt > self.entry else (1 if zt < -self.entry else 0)
            if want and want != blocked and math.isfinite(self.beta[t]):
                if not liquidity.ok(t):
                    return None, blocked, 1
                action = "enter_long" if want > 0 else "enter_short"
                return (action, t, float(self.beta[t]), ""), blocked, 0
            return None, blocked, 0
        # side < 0 is short the spread: stopped out above +stop, reverted at or below exit_z.
        stopped = self.stop is not None and (zt > self.stop if side < 0 else zt < -self.stop)
        if stopped:
            return ("exit", t, 0.0, "stop"), side, 0
        if (zt <= self.exit) if side < 0 else (zt >= -self.exit):
            return ("exit", t, 0.0, "revert"), blocked, 0
        return None, blocked, 0


@dataclass(frozen=True, slots=True)
class _Liquidity:
    """The liquidity filter: read on the signal bar (what is known when deciding)."""

    x: np.ndarray
    y: np.ndarray
    vx: np.ndarray | None
    vy: np.ndarray | None
    tx: np.ndarray | None
    ty: np.ndarray | None
    min_quote_volume: float | None
    min_trades: float | None

    @classmethod
    def checked(cls, xa, ya, volume_x, volume_y, trades_x, trades_y, rules: _Rules) -> _Liquidity:
        n = xa.size
        vx = _optional("volume_x", volume_x, n)
        vy = _optional("volume_y", volume_y, n)
        tx = _optional("trades_x", trades_x, n)
        ty = _optional("trades_y", trades_y, n)
        if rules.min_quote_volume is not None and (vx is None or vy is None):
            raise ValueError("min_quote_volume needs volume_x and volume_y")
        if rules.min_trades is not None and (tx is None or ty is None):
            raise ValueError("min_trades needs trades_x and trades_y")
        return cls(xa, ya, vx, vy, tx, ty, rules.min_quote_volume, rules.min_trades)

    def ok(self, t: int) -> bool:
        qv = self.min_quote_volume
        if qv is not None and min(self.x[t] * self.vx[t], self.y[t] * self.vy[t]) < qv:
            return False
        return not (self.min_trades is not None and min(self.tx[t], self.ty[t]) < self.min_trades)


class _Book:
    """Positions, fills at closes, fees and equity of one backtest."""

    def __init__(self, xa: np.ndarray, ya: np.ndarray, fee: float, funding=None):
        self.x, self.y, self.fee = xa, ya, fee
        self.rates = funding  # (per-bar rates of x, of y) or None
        self.funding = 0.0  # funding received (> 0) or paid (< 0) so far
        self.funding_legs = [0.0, 0.0]  # the same, of x and of y
        self.equity = np.zeros(xa.size)
        self.position = np.zeros(xa.size)
        self.trades: list[Trade] = []
        self.realised = 0.0
        self.fees_paid = 0.0
        self.side = 0  # +1 long spread, −1 short, 0 flat
        self.open: dict | None = None

    def _gross(self, t: int) -> float:
        ot = self.open
        return ot["qty_x"] * (self.x[t] - ot["entry_x"]) + ot["qty_y"] * (self.y[t] - ot["entry_y"])

    def fill(self, t: int, action: str, sig: int, beta_sig: float, reason: str) -> None:
        """Fill an action decided at bar ``sig`` at bar ``t``'s close."""
        xt, yt = self.x[t], self.y[t]
        if action in ("enter_long", "enter_short"):
            self.side = 1 if action == "enter_long" else -1
            qx, qy = float(self.side), -self.side * beta_sig
            f = self.fee * (abs(qx) * xt + abs(qy) * yt)
            self.fees_paid += f
            self.open = {
                "funding_pnl": 0.0,
                "side": "long" if self.side > 0 else "short",
                "signal_bar": sig,
                "entry_bar": t,
                "beta": beta_sig,
                "qty_x": qx,
                "qty_y": qy,
                "entry_x": float(xt),
                "entry_y": float(yt),
                "fees": f,
            }
            return
        ot = self.open
        gross = ot["qty_x"] * (xt - ot["entry_x"])
        gross += ot["qty_y"] * (yt - ot["entry_y"])
        f = self.fee * (abs(ot["qty_x"]) * xt + abs(ot["qty_y"]) * yt)
        self.fees_paid += f
        self.realised += gross
        total_fees = ot["fees"] + f
        self.trades.append(
            Trade(
                **ot | {"fees": total_fees},
                exit_bar=t,
                exit_x=float(xt),
                exit_y=float(yt),
                gross_pnl=float(gross),
                pnl=float(gross - total_fees + ot["funding_pnl"]),
                exit_reason=reason,
            )
        )
        self.open = None
        self.side = 0

    def charge_funding(self, t: int) -> None:
        """Funding settling at bar ``t``'s close, on the position held after its fill."""
        ot = self.open
        if self.rates is None or ot is None:
            return
        rx, ry = self.rates[0][t], self.rates[1][t]
        paid_x, paid_y = float(ot["qty_x"] * self.x[t] * rx), float(ot["qty_y"] * self.y[t] * ry)
        paid = paid_x + paid_y
        ot["funding_pnl"] -= paid
        self.funding -= paid
        self.funding_legs[0] -= paid_x
        self.funding_legs[1] -= paid_y

    def mark(self, t: int) -> None:
        """Equity and position after bar ``t``'s close (an open trade at mark-to-market)."""
        unreal = self._gross(t) if self.open is not None else 0.0
        self.equity[t] = self.realised + unreal - self.fees_paid + self.funding
        self.position[t] = self.side

    def close_open(self) -> None:
        """Report a trade still open at the end at the last closes, without exit fee."""
        if self.open is None:
            return
        ot = self.open
        gross = self._gross(-1)
        self.trades.append(
            Trade(
                **ot,
                exit_bar=None,
                exit_x=float(self.x[-1]),
                exit_y=float(self.y[-1]),
                gross_pnl=float(gross),
                pnl=float(gross - ot["fees"] + ot["funding_pnl"]),
                exit_reason="open",
            )
        )


def _result(book: _Book, skipped: int, bar_seconds: float | None) -> BacktestResult:
    equity, trades, n = book.equity, book.trades, book.equity.size
    closed = [tr for tr in trades if tr.exit_bar is not None]
    win_rate = (sum(tr.pnl > 0 for tr in closed) / len(closed)) if closed else float("nan")
    peak = np.maximum.accumulate(np.maximum(equity, 0.0))
    max_dd = float(np.max(peak - equity)) if n else 0.0
    steps = np.diff(equity, prepend=0.0)
    sd = float(np.std(steps, ddof=1)) if n > 1 else 0.0
    sharpe = float(np.mean(steps) / sd) if sd > 0 else float("nan")
    ann = None
    if bar_seconds is not None:
        ann = sharpe * math.sqrt(SECONDS_PER_YEAR / float(bar_seconds))
    readonly(equity, book.position)
    return BacktestResult(
        trades=tuple(trades),
        equity=equity,
        position=book.position,
        total_pnl=float(equity[-1]),
        n_trades=len(trades),
        win_rate=float(win_rate),
        max_drawdown=max_dd,
        sharpe=sharpe,
        sharpe_annualised=ann,
        fees_paid=float(book.fees_paid),
        skipped_entries=skipped,
        funding_pnl=float(book.funding),
        funding_pnl_x=float(book.funding_legs[0]),
        funding_pnl_y=float(book.funding_legs[1]),
    )
