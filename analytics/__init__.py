"""Pure pairs-trading statistics: numpy, pandas, statsmodels and scipy only."""
