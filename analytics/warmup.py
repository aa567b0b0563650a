"""Warm-up bookkeeping: how many more bars until a rolling statistic is defined."""

from __future__ import annotations

from dataclasses import dataclass

from analytics._validate import check_window


@dataclass(frozen=True, slots=True)
class Warmup:
    """Where a rolling statistic stands in its warm-up.

    Attributes
    ----------
    n_bars : int
        Bars available now.
    bars_required : int
        Bars the statistic needs before its latest value is defined.
    bars_needed : int
        More bars to wait for: ``max(0, bars_required - n_bars)``. ``0`` means defined.

    Notes
    -----
    Warm-up is a normal state, not an error: the dashboard shows "waiting for N more
    bars" instead of a number. A statistic can still be undefined after warm-up (for
    example a z-score when the spread's standard deviation is zero); that shows as NaN.
    """

    n_bars: int
    bars_required: int
    bars_needed: int

    @property
    def defined(self) -> bool:
        """True once enough bars exist for the latest value."""
        return self.bars_needed == 0


def warmup_status(n_bars: int, window: int, *, returns: bool = False) -> Warmup:
    """How many more bars a ``window``-bar statistic needs, given ``n_bars`` bars.

    Parameters
    ----------
    n_bars : int
        Bars available (≥ 0).
    window : int
        Window length in bars (≥ 2).
    returns : bool
        True for statistics of returns (rolling correlation, volatility): ``window``
        returns need ``window + 1`` prices.

    Returns
    -------
    Warmup

    Notes
    -----
    Rolling OLS, spread and z-score are defined from bar index ``window - 1`` on
    (``window`` bars); correlation of returns from bar ``window`` on.
    """
    window = check_window(window)
    if isinstance(n_bars, bool) or not isinstance(n_bars, int) or n_bars < 0:
        raise ValueError(f"n_bars must be a non-negative integer, got {n_bars!r}")
    required = window + 1 if returns else window
    return Warmup(n_bars=n_bars, bars_required=required, bars_needed=max(0, required - n_bars))
