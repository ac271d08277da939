"""A local Binance-compatible spot feed (WebSocket trade streams + REST) for demos, tests and
benchmarks. See docs/replay.md; start it with `python -m replay` or, in tests,
`replay.testing.running_feed(...)`."""
