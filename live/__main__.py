"""`python -m live [--symbols BTCUSDT,ETHUSDT] [--duration SECONDS]`."""

from live.main import run

if __name__ == "__main__":
    raise SystemExit(run())
