"""Each transform on small hand-made DataFrames, against hand-computed figures.

Uses the session-scoped local SparkSession (Spark is a library here); no PostgreSQL, no S3.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal, localcontext
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from etl.transform import (
    build_dim_symbol,
    build_dim_time,
    build_fact_trades,
    filter_day,
    split_symbol,
)

DAY = date(2025, 3, 1)
SCHEMA = T.StructType(
    [
        T.StructField("symbol", T.StringType(), False),
        T.StructField("trade_id", T.LongType(), False),
        T.StructField("price", T.DecimalType(30, 8), False),
        T.StructField("quantity", T.DecimalType(30, 8), False),
        T.StructField("trade_time", T.TimestampType(), False),
        T.StructField("is_buyer_maker", T.BooleanType(), False),
    ]
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def trades(spark: SparkSession, rows: list[tuple[str, int, str, str, str, bool]]) -> DataFrame:
    return spark.createDataFrame(
        [(s, i, Decimal(p), Decimal(q), at(t), m) for s, i, p, q, t, m in rows], SCHEMA
    )


ROWS = [
    # the day before's last millisecond and the next day's first instant: not this day
    ("BTCUSDT", 9, "1.00000000", "1.00000000", "2025-02-28 23:59:59.999", False),
    ("BTCUSDT", 13, "1.00000000", "1.00000000", "2025-03-02 00:00:00.000", False),
    # BTCUSDT 00:00: the day's first instant belongs to it; six-digit prices
    ("BTCUSDT", 11, "100001.00000000", "1.25000000", "2025-03-01 00:00:30.500", True),
    ("BTCUSDT", 10, "100000.10000000", "0.50000000", "2025-03-01 00:00:00.000", False),
    ("BTCUSDT", 12, "99999.99999999", "0.00000001", "2025-03-01 00:00:59.999", False),
    # ETHUSDT 12:34: three trades in one millisecond at the open, two at the close
    ("ETHUSDT", 502, "2002.00000000", "1.00000000", "2025-03-01 12:34:00.100", False),
    ("ETHUSDT", 501, "2001.00000000", "1.00000000", "2025-03-01 12:34:00.100", True),
    ("ETHUSDT", 500, "2000.00000000", "1.00000000", "2025-03-01 12:34:00.100", False),
    ("ETHUSDT", 504, "1998.50000000", "3.00000000", "2025-03-01 12:34:59.999", True),
    ("ETHUSDT", 503, "1999.00000000", "2.00000000", "2025-03-01 12:34:59.999", True),
    # 1000PEPEUSDT 23:59: quantities in the hundred millions; its last ms is still this day
    ("1000PEPEUSDT", 7000, "0.01234567", "98765432.12345678", "2025-03-01 23:59:59.999", False),
    ("1000PEPEUSDT", 6999, "0.01234568", "12345678.87654321", "2025-03-01 23:59:00.000", True),
]


def facts_by_key(frame: DataFrame) -> dict[tuple[str, str], dict[str, Any]]:
    rows = frame.withColumn(
        "minute_text", F.date_format("trade_minute", "yyyy-MM-dd HH:mm")
    ).collect()
    return {(row["symbol"], row["minute_text"]): row.asDict() for row in rows}


def test_fact_trades_hand_computed(spark: SparkSession) -> None:
    facts = facts_by_key(build_fact_trades(trades(spark, ROWS), DAY))

    assert set(facts) == {
        ("BTCUSDT", "2025-03-01 00:00"),
        ("ETHUSDT", "2025-03-01 12:34"),
        ("1000PEPEUSDT", "2025-03-01 23:59"),
    }
    btc = facts[("BTCUSDT", "2025-03-01 00:00")]
    assert btc["trade_count"] == 3
    assert btc["min_price"] == Decimal("99999.99999999")
    assert btc["max_price"] == Decimal("100001.00000000")
    assert btc["open_price"] == Decimal("100000.10000000")  # 00:00:00.000, not the 23:59:59.999
    assert btc["close_price"] == Decimal("99999.99999999")
    assert btc["total_quantity"] == Decimal("1.75000001")
    # 50000.05 + 125001.25 + 0.0009999999999999: 16 decimal places, nothing rounded
    assert btc["total_trade_value"] == Decimal("175001.3009999999999999")
    assert btc["avg_price"] == Decimal("100000.366666663333")  # 300001.09999999 / 3
    assert btc["vwap"] == Decimal("100000.742857138612")
    assert btc["taker_buy_quantity"] == Decimal("0.50000001")
    assert btc["trade_date"] == DAY

    eth = facts[("ETHUSDT", "2025-03-01 12:34")]
    assert eth["trade_count"] == 5
    assert eth["open_price"] == Decimal("2000")  # same ms: lowest trade id first
    assert eth["close_price"] == Decimal("1998.5")  # same ms: highest trade id last
    assert (eth["min_price"], eth["max_price"]) == (Decimal("1998.5"), Decimal("2002"))
    assert eth["total_quantity"] == Decimal("8")
    assert eth["total_trade_value"] == Decimal("15996.5")
    assert eth["avg_price"] == Decimal("2000.1")
    assert eth["vwap"] == Decimal("1999.5625")
    assert eth["taker_buy_quantity"] == Decimal("2")

    pepe = facts[("1000PEPEUSDT", "2025-03-01 23:59")]
    assert pepe["total_quantity"] == Decimal("111111110.99999999")
    assert pepe["total_trade_value"] == Decimal("1371741.2331961586419754")
    assert pepe["avg_price"] == Decimal("0.012345675000")
    assert pepe["vwap"] == Decimal("0.012345671111")
    assert pepe["open_price"] == Decimal("0.01234568")
    assert pepe["close_price"] == Decimal("0.01234567")
    assert pepe["taker_buy_quantity"] == Decimal("98765432.12345678")


def test_fact_trades_output_contract(spark: SparkSession) -> None:
    schema = build_fact_trades(trades(spark, ROWS), DAY).schema
    types = {field.name: field.dataType.simpleString() for field in schema}
    assert list(types) == [
        "symbol", "trade_minute", "min_price", "max_price", "avg_price", "total_quantity",
        "total_trade_value", "trade_count", "open_price", "close_price", "vwap",
        "taker_buy_quantity", "trade_date",
    ]
    assert types["total_trade_value"] == "decimal(38,16)"
    assert types["total_quantity"] == "decimal(38,8)"
    assert types["min_price"] == "decimal(30,8)"


def test_large_six_digit_price_times_large_quantity_is_exact(spark: SparkSession) -> None:
    rows = [("BTCUSDT", 1, "123456.78901234", "9876.54321098", "2025-03-01 08:00:01", False)] * 1
    rows += [("BTCUSDT", 2, "123456.78901234", "9876.54321098", "2025-03-01 08:00:02", False)]
    facts = facts_by_key(build_fact_trades(trades(spark, rows), DAY))
    row = facts[("BTCUSDT", "2025-03-01 08:00")]
    # 2 × 1219326311.3692168864434932 — sixteen decimal places kept
    assert row["total_trade_value"] == Decimal("2438652622.7384337728869864")


def test_scaled_integer_input_gives_the_same_exact_facts(spark: SparkSession) -> None:
    """The extract's shape (price_e8/quantity_e8 bigints) and the decimal shape agree, incl.
    sums far beyond 64 bits (six-digit prices × quantities in the hundred millions)."""
    rows = [
        ("BTCUSDT", 1, "123456.78901234", "987654321.12345678", "2025-03-01 08:00:01", False),
        ("BTCUSDT", 2, "999999.99999999", "999999999.99999999", "2025-03-01 08:00:02", True),
        ("BTCUSDT", 3, "0.00000001", "0.00000001", "2025-03-01 08:00:03", False),
        *ROWS,
    ]
    decimal_input = trades(spark, rows)
    scaled_input = decimal_input.select(
        "symbol",
        "trade_id",
        (F.col("price") * 100_000_000).cast("long").alias("price_e8"),
        (F.col("quantity") * 100_000_000).cast("long").alias("quantity_e8"),
        "trade_time",
        "is_buyer_maker",
    )
    from_decimal = build_fact_trades(decimal_input, DAY)
    from_scaled = build_fact_trades(scaled_input, DAY)
    assert from_scaled.schema == from_decimal.schema
    assert facts_by_key(from_scaled) == facts_by_key(from_decimal)
    row = facts_by_key(from_scaled)[("BTCUSDT", "2025-03-01 08:00")]
    price_qty = [(Decimal(p), Decimal(q)) for _, _, p, q, _, _ in rows[:3]]
    with localcontext() as exact:
        exact.prec = 60
        assert row["total_trade_value"] == sum(p * q for p, q in price_qty)
    assert row["total_quantity"] == Decimal("1987654321.12345678")
    assert row["taker_buy_quantity"] == Decimal("987654321.12345679")
    assert row["avg_price"] == Decimal("374485.596337446667")
    assert (row["open_price"], row["close_price"]) == (
        Decimal("123456.78901234"), Decimal("0.00000001")
    )


def test_precision_loss_is_refused(spark: SparkSession) -> None:
    spark.conf.set("spark.sql.decimalOperations.allowPrecisionLoss", "true")
    try:
        with pytest.raises(RuntimeError, match="rounds"):
            build_fact_trades(trades(spark, ROWS), DAY)
    finally:
        spark.conf.set("spark.sql.decimalOperations.allowPrecisionLoss", "false")


def test_filter_day_boundaries(spark: SparkSession) -> None:
    kept = filter_day(trades(spark, ROWS), DAY).select("trade_id").collect()
    assert sorted(row["trade_id"] for row in kept) == [
        10, 11, 12, 500, 501, 502, 503, 504, 6999, 7000
    ]


def test_empty_input_gives_no_facts(spark: SparkSession) -> None:
    empty = spark.createDataFrame([], SCHEMA)
    assert build_fact_trades(empty, DAY).count() == 0


def test_dim_time_every_minute() -> None:
    leap_day = date(2024, 2, 29)
    table = build_dim_time(leap_day)
    rows = table.to_pylist()
    assert len(rows) == 1440
    assert len({row["datetime"] for row in rows}) == 1440
    first, last = rows[0], rows[-1]
    assert first["datetime"] == datetime(2024, 2, 29, tzinfo=UTC)
    assert (first["year"], first["month"], first["day"], first["hour"], first["minute"]) == (
        2024, 2, 29, 0, 0
    )
    assert last["datetime"] == datetime(2024, 2, 29, 23, 59, tzinfo=UTC)
    assert (last["hour"], last["minute"]) == (23, 59)
    assert table.schema.names == ["datetime", "year", "month", "day", "hour", "minute"]
    assert str(table.schema.field("datetime").type) == "timestamp[us, tz=UTC]"


def test_dim_symbol_quote_suffixes_and_an_empty_symbol(spark: SparkSession) -> None:
    traded = [row["symbol"] for row in
              build_fact_trades(trades(spark, ROWS), DAY).select("symbol").distinct().collect()]
    configured = ["BTCUSDT", "SOLUSDT", "ETHBTC", "BTCFDUSD", "USDTTRY", "BTCTUSD", "WEIRDX"]
    table = build_dim_symbol([*traded, *configured])
    assert table.schema.names == ["symbol", "base_asset", "quote_asset"]
    dim = {row["symbol"]: (row["base_asset"], row["quote_asset"]) for row in table.to_pylist()}
    assert dim == {
        "BTCUSDT": ("BTC", "USDT"),
        "ETHUSDT": ("ETH", "USDT"),
        "1000PEPEUSDT": ("1000PEPE", "USDT"),
        "SOLUSDT": ("SOL", "USDT"),  # configured, no trade that day: still a dimension row
        "ETHBTC": ("ETH", "BTC"),
        "BTCFDUSD": ("BTC", "FDUSD"),
        "USDTTRY": ("USDT", "TRY"),
        "BTCTUSD": ("BTC", "TUSD"),
        "WEIRDX": ("WEIRDX", None),  # no known quote asset: base = symbol, quote NULL
    }
    assert split_symbol("USDT") == ("USDT", None)  # a bare asset is not a pair
    assert build_dim_symbol([]).num_rows == 0


def test_open_close_key_refuses_a_minute_across_an_id_block(spark: SparkSession) -> None:
    block = 1 << 37  # the ordering key keeps the low 37 bits of the trade id
    rows = [
        ("BTCUSDT", block - 1, "10.00000000", "1.00000000", "2025-03-01 09:00:00", False),
        ("BTCUSDT", block, "11.00000000", "1.00000000", "2025-03-01 09:00:00", False),
    ]
    with pytest.raises(Exception, match="2\\^37 block"):
        build_fact_trades(trades(spark, rows), DAY).collect()
    # inside one block the same microsecond is ordered by id, whatever the id's size
    inside = [
        ("BTCUSDT", 5 * block + 7, "12.00000000", "1.00000000", "2025-03-01 09:00:00.000001", True),
        ("BTCUSDT", 5 * block + 6, "13.00000000", "1.00000000", "2025-03-01 09:00:00.000001", True),
    ]
    facts = facts_by_key(build_fact_trades(trades(spark, inside), DAY))
    row = facts[("BTCUSDT", "2025-03-01 09:00")]
    assert (row["open_price"], row["close_price"]) == (Decimal("13"), Decimal("12"))


def test_lake_columns_are_in_warehouse_order(spark: SparkSession) -> None:
    """Redshift's Parquet COPY maps columns by position: file order must equal table order."""
    from etl.redshift import TABLE_SPECS

    columns = {
        "fact_trades": build_fact_trades(trades(spark, ROWS), DAY).columns,
        "dim_time": build_dim_time(DAY).schema.names,
        "dim_symbol": build_dim_symbol(["BTCUSDT"]).schema.names,
    }
    for table, names in columns.items():
        assert tuple(names) == TABLE_SPECS[table].column_names, table
