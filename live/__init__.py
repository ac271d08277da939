"""Near-real-time minute bars: a Spark Structured Streaming query over the raw `trades` table
that keeps `bars_1m` current (`python -m live`; docs/live.md)."""
