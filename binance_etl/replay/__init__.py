"""A local Binance-compatible spot feed (WebSocket trade streams + REST) for demos, tests and
benchmarks. See docs/replay.md; start it with `python -m binance_etl.replay` or, in tests,
`binance_etl.replay.testing.running_feed(...)`."""
