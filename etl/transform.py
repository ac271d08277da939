"""Transform: the day's trades → dim_time, dim_symbol and fact_trades, with exact decimals.

Each builder is a pure DataFrame function with one final `select` that states its output
contract. Arithmetic is decimal end to end: sums of decimal(30,8) are exact, and Σ price×qty is
typed decimal(38,16) (8 + 8 decimal places, exact) because the session runs with
`spark.sql.decimalOperations.allowPrecisionLoss=false`; `build_fact_trades` refuses to run if
that guarantee is missing. No Python UDFs.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from etl.utils import day_bounds

PRICE = T.DecimalType(30, 8)
QUANTITY_SUM = T.DecimalType(38, 8)
VALUE_SUM = T.DecimalType(38, 16)  # Σ price × quantity: exactly 16 decimal places
MEAN = T.DecimalType(30, 12)  # avg_price and vwap: rounded half-up to 12 decimal places
ID_BITS = 37  # low trade-id bits in the open/close ordering key (2^37 ≈ 137 billion)
ID_MASK = (1 << ID_BITS) - 1
MINUTES_PER_DAY = 1440

# Quote assets recognised at the end of a Binance symbol, longest first so that e.g. FDUSD wins
# over USD-like shorter suffixes. exchangeInfo may be unreachable from a batch, so the split is
# derived here; a symbol with none of these suffixes keeps base_asset = symbol, quote_asset NULL.
QUOTE_ASSETS = (
    "FDUSD", "USDT", "USDC", "TUSD", "BUSD", "USDP", "USDS", "EURI", "AEUR",
    "DAI", "BTC", "ETH", "BNB", "XRP", "TRX", "DOGE", "SOL",
    "EUR", "GBP", "TRY", "BRL", "JPY", "AUD", "ARS", "MXN", "PLN", "RON", "ZAR", "UAH",
    "IDR", "COP", "CZK", "NGN", "RUB", "BIDR",
)


def filter_day(trades: DataFrame, day: date) -> DataFrame:
    """Only the trades of `day`: 00:00:00.000 belongs to it, 23:59:59.999 to the day before."""
    start, end = day_bounds(day)
    return trades.where((F.col("trade_time") >= F.lit(start)) & (F.col("trade_time") < F.lit(end)))


def build_dim_time(spark: SparkSession, day: date) -> DataFrame:
    """Every minute of the day (1,440 rows)."""
    start, _ = day_bounds(day)
    epoch = int(start.timestamp())
    minutes = spark.range(MINUTES_PER_DAY).withColumn(
        "datetime", F.timestamp_seconds(F.lit(epoch) + F.col("id") * F.lit(60))
    )
    return minutes.select(
        F.col("datetime"),
        F.year("datetime").alias("year"),
        F.month("datetime").alias("month"),
        F.dayofmonth("datetime").alias("day"),
        F.hour("datetime").alias("hour"),
        F.minute("datetime").alias("minute"),
    )


def split_symbol(symbol: str) -> tuple[str, str | None]:
    """`1000PEPEUSDT` → ("1000PEPE", "USDT"): the longest known quote-asset suffix wins;
    without one, base_asset is the whole symbol and quote_asset is None."""
    for asset in sorted(QUOTE_ASSETS, key=len, reverse=True):
        if symbol.endswith(asset) and len(symbol) > len(asset):
            return symbol[: -len(asset)], asset
    return symbol, None


DIM_SYMBOL_SCHEMA = T.StructType(
    [
        T.StructField("symbol", T.StringType(), False),
        T.StructField("base_asset", T.StringType(), False),
        T.StructField("quote_asset", T.StringType(), True),
    ]
)


def build_dim_symbol(spark: SparkSession, symbols: Iterable[str]) -> DataFrame:
    """One row per symbol (the day's traded ones plus the configured ones). A handful of rows
    derived on the driver from the symbol names: no UDF, no Spark job."""
    rows = [(symbol, *split_symbol(symbol)) for symbol in sorted(set(symbols))]
    return spark.createDataFrame(rows, DIM_SYMBOL_SCHEMA)


def _require_exact_products(trades: DataFrame) -> None:
    probe = trades.select((F.col("price") * F.col("quantity")).alias("value")).schema["value"]
    if not isinstance(probe.dataType, T.DecimalType) or probe.dataType.scale < 16:
        raise RuntimeError(
            f"price × quantity is typed {probe.dataType.simpleString()}, which rounds; the session "
            "needs spark.sql.decimalOperations.allowPrecisionLoss=false and decimal inputs"
        )


def build_fact_trades(trades: DataFrame, day: date) -> DataFrame:
    """One row per (symbol, minute) with trades; open/close by (trade_time, trade_id)."""
    day_trades = filter_day(trades, day).select(
        F.col("symbol"),
        F.col("trade_id"),
        F.col("price").cast(PRICE).alias("price"),
        F.col("quantity").cast(PRICE).alias("quantity"),
        F.col("trade_time"),
        F.col("is_buyer_maker"),
    )
    _require_exact_products(day_trades)
    keyed = day_trades.withColumns(
        {
            "trade_minute": F.date_trunc("minute", F.col("trade_time")),
            "trade_value": F.col("price") * F.col("quantity"),
            # (time, trade id) packed into ONE long so that min_by/max_by stay in a hash
            # aggregate (a struct or a wide decimal key costs a sort or BigDecimal work per
            # row): microseconds within the minute (< 2^26) above the trade id's low 37 bits.
            # That orders exactly while a minute's ids share one 2^37 block; the final select
            # raises an error (never a silent misorder) for a minute that does not.
            "order_key": F.shiftleft(
                F.unix_micros("trade_time") - F.unix_micros(F.date_trunc("minute", "trade_time")),
                ID_BITS,
            ).bitwiseOR(F.col("trade_id").bitwiseAND(F.lit(ID_MASK))),
            "id_block": F.shiftright("trade_id", ID_BITS),
        }
    )
    per_minute = keyed.groupBy("symbol", "trade_minute").agg(
        F.min("price").alias("min_price"),
        F.max("price").alias("max_price"),
        F.avg("price").alias("avg_price"),
        F.sum("quantity").alias("total_quantity"),
        F.sum("trade_value").alias("total_trade_value"),
        F.count(F.lit(1)).alias("trade_count"),
        F.min_by("price", "order_key").alias("open_price"),
        F.max_by("price", "order_key").alias("close_price"),
        F.sum(F.when(~F.col("is_buyer_maker"), F.col("quantity"))).alias("taker_buy_quantity"),
        F.min("id_block").alias("first_id_block"),
        F.max("id_block").alias("last_id_block"),
    )
    ordered = F.col("first_id_block") == F.col("last_id_block")
    return per_minute.select(
        F.col("symbol"),
        F.col("trade_minute"),
        F.col("min_price").cast(PRICE).alias("min_price"),
        F.col("max_price").cast(PRICE).alias("max_price"),
        F.col("avg_price").cast(MEAN).alias("avg_price"),
        F.col("total_quantity").cast(QUANTITY_SUM).alias("total_quantity"),
        F.col("total_trade_value").cast(VALUE_SUM).alias("total_trade_value"),
        F.col("trade_count").cast("long").alias("trade_count"),
        F.when(ordered, F.col("open_price"))
        .otherwise(F.raise_error(F.lit("trade ids of one minute span a 2^37 block")))
        .cast(PRICE)
        .alias("open_price"),
        F.col("close_price").cast(PRICE).alias("close_price"),
        F.when(
            F.col("total_quantity") != 0,
            (F.col("total_trade_value") / F.col("total_quantity")).cast(MEAN),
        ).alias("vwap"),
        F.coalesce(F.col("taker_buy_quantity"), F.lit(0))
        .cast(QUANTITY_SUM)
        .alias("taker_buy_quantity"),
        F.lit(day).cast("date").alias("trade_date"),
    )
