"""Real-time ingest of Binance spot trades into PostgreSQL (issue 3); see docs/ingest.md."""
