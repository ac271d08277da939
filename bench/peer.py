"""The single-machine peer of the day batch: ConnectorX into Polars (bench-only dependencies).

What a user without Spark would write: the day's raw rows read by ConnectorX over two
connections (the same two half-open time ranges as our extract), the per-(symbol, minute)
facts computed by Polars, written as one Parquet file. Not a drop-in for the batch: no quality
gate, no warehouse load, and not exact — Polars keeps Σ price × quantity at the inputs' scale
(8 decimal places), ours keeps all 16.
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path
from typing import Any

from etl.extract import time_range_predicates

COLUMNS = "symbol, trade_id, price, quantity, trade_time, is_buyer_maker"


def day_queries(day: date, partitions: int = 2) -> list[str]:
    """One query per time range; together exactly the day's trades."""
    return [
        f"SELECT {COLUMNS} FROM public.trades WHERE {predicate}"
        for predicate in time_range_predicates(day, partitions)
    ]


def run(url: str, day: date, out_dir: Path, partitions: int = 2) -> dict[str, Any]:
    """Seconds to read the day and to build and write its facts; the rows read and written."""
    import connectorx as cx
    import polars as pl

    started = time.perf_counter()
    trades = cx.read_sql(url, day_queries(day, partitions), return_type="polars")
    read = time.perf_counter() - started
    price, quantity = pl.col("price"), pl.col("quantity")
    order = ["trade_time", "trade_id"]
    facts = (
        trades.with_columns(pl.col("trade_time").dt.truncate("1m").alias("trade_minute"))
        .group_by("symbol", "trade_minute")
        .agg(
            price.min().alias("min_price"),
            price.max().alias("max_price"),
            price.mean().alias("avg_price"),
            quantity.sum().alias("total_quantity"),
            (price * quantity).sum().alias("total_trade_value"),
            pl.len().alias("trade_count"),
            price.sort_by(order).first().alias("open_price"),
            price.sort_by(order).last().alias("close_price"),
            quantity.filter(~pl.col("is_buyer_maker")).sum().alias("taker_buy_quantity"),
        )
        .with_columns((pl.col("total_trade_value") / pl.col("total_quantity")).alias("vwap"))
        .sort("symbol", "trade_minute")
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    facts.write_parquet(out_dir / "fact_trades.parquet")
    total = time.perf_counter() - started
    return {
        "peer": total,
        "peer_read": read,
        "rows_read": trades.height,
        "fact_rows": facts.height,
        "price_type": str(trades.schema["price"]),
        "value_type": str(facts.schema["total_trade_value"]),
    }
