"""Binance USD-M trade ingestion: parse at the edge, connect, repair gaps, write through storage."""
