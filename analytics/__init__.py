"""Pure pairs-trading statistics: numpy, pandas, statsmodels and scipy only.

x is always the dependent leg: ``x = alpha + beta · y + spread``. Every function validates
its inputs first and raises ``ValueError`` with the reason; results are frozen dataclasses.
Warm-up (fewer bars than a window) is a normal state reported as ``bars_needed``.
"""

from analytics.backtest import BacktestResult, Trade, backtest
from analytics.funding import funding_per_bar
from analytics.hedge import (
    OLSFit,
    RollingCorrelation,
    RollingOLS,
    ols_fit,
    rolling_correlation,
    rolling_ols,
)
from analytics.kalman import KalmanHedge, kalman_hedge
from analytics.multi import (
    CorrelationMatrix,
    PairScan,
    align_closes,
    correlation_matrix,
    scan_pairs,
)
from analytics.pairs import (
    DEFAULT_ROBUST_FIT_LAST,
    METHODS,
    PairAnalytics,
    compute_pair,
    compute_pair_frame,
)
from analytics.prices import PriceStats, price_stats
from analytics.robust import RobustHedge, rolling_huber, rolling_theilsen
from analytics.stationarity import (
    ADFResult,
    HalfLife,
    Stationarity,
    adf_test,
    half_life,
    hurst_exponent,
    stationarity,
)
from analytics.warmup import Warmup, warmup_status

__all__ = [
    "DEFAULT_ROBUST_FIT_LAST",
    "METHODS",
    "ADFResult",
    "BacktestResult",
    "CorrelationMatrix",
    "HalfLife",
    "KalmanHedge",
    "OLSFit",
    "PairAnalytics",
    "PairScan",
    "PriceStats",
    "RobustHedge",
    "RollingCorrelation",
    "RollingOLS",
    "Stationarity",
    "Trade",
    "Warmup",
    "adf_test",
    "align_closes",
    "backtest",
    "compute_pair",
    "compute_pair_frame",
    "correlation_matrix",
    "funding_per_bar",
    "half_life",
    "hurst_exponent",
    "kalman_hedge",
    "ols_fit",
    "price_stats",
    "rolling_correlation",
    "rolling_huber",
    "rolling_ols",
    "rolling_theilsen",
    "scan_pairs",
    "stationarity",
    "warmup_status",
]
