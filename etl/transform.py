"""Transform: the day's trades → fact_trades (Spark), dim_time and dim_symbol (Arrow).

`build_fact_trades` is a pure DataFrame function with one final `select` that states its output
contract. Its per-row work is exact long arithmetic on prices and quantities scaled by 10^8;
the per-minute results are rebuilt as the decimals decimal arithmetic would give (sums
decimal(38,8), Σ price×qty decimal(38,16), means rounded half-up to 12 places), and it refuses
to run in a session whose decimal products would round
(`spark.sql.decimalOperations.allowPrecisionLoss` must be false). No Python UDFs.

The two dimensions need no trade data — a calendar and a list of symbol names — so they are
built on the driver as Arrow tables, the form in which the lake writes the day's tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal

import pyarrow as pa
from pyspark.sql import Column, DataFrame
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


def build_dim_time(day: date) -> pa.Table:
    """Every minute of the day (1,440 rows). A calendar, not data: built on the driver, no
    Spark job (a job per tiny table cost about a second)."""
    start, _ = day_bounds(day)
    minutes = [start + timedelta(minutes=index) for index in range(MINUTES_PER_DAY)]
    return pa.table(
        {
            "datetime": pa.array(minutes, pa.timestamp("us", tz="UTC")),
            "year": pa.array([m.year for m in minutes], pa.int32()),
            "month": pa.array([m.month for m in minutes], pa.int32()),
            "day": pa.array([m.day for m in minutes], pa.int32()),
            "hour": pa.array([m.hour for m in minutes], pa.int32()),
            "minute": pa.array([m.minute for m in minutes], pa.int32()),
        },
        schema=DIM_TIME_SCHEMA,
    )


def split_symbol(symbol: str) -> tuple[str, str | None]:
    """`1000PEPEUSDT` → ("1000PEPE", "USDT"): the longest known quote-asset suffix wins;
    without one, base_asset is the whole symbol and quote_asset is None."""
    for asset in sorted(QUOTE_ASSETS, key=len, reverse=True):
        if symbol.endswith(asset) and len(symbol) > len(asset):
            return symbol[: -len(asset)], asset
    return symbol, None


DIM_TIME_SCHEMA = pa.schema(
    [
        pa.field("datetime", pa.timestamp("us", tz="UTC"), nullable=False),
        *(pa.field(name, pa.int32(), nullable=False)
          for name in ("year", "month", "day", "hour", "minute")),
    ]
)
DIM_SYMBOL_SCHEMA = pa.schema(
    [
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("base_asset", pa.string(), nullable=False),
        pa.field("quote_asset", pa.string(), nullable=True),
    ]
)


def build_dim_symbol(symbols: Iterable[str]) -> pa.Table:
    """One row per symbol (the day's traded ones plus the configured ones), derived from the
    symbol names on the driver: no UDF, no Spark job."""
    rows = [(symbol, *split_symbol(symbol)) for symbol in sorted(set(symbols))]
    columns = list(zip(*rows, strict=True)) if rows else [(), (), ()]
    return pa.table([pa.array(column, pa.string()) for column in columns],
                    schema=DIM_SYMBOL_SCHEMA)


SCALE = 10**8  # prices and quantities are numeric(30,8): value × 10^8 is an exact integer
UNIT = Decimal("0.00000001")  # 10^-8
UNIT2 = Decimal("0.0000000000000001")  # 10^-16
LIMB = 21  # Σ price×qty in long arithmetic: each factor split into three 21-bit limbs
LIMB_MASK = (1 << LIMB) - 1
HALF = 31  # other sums: high part (value >> 31) and low part (value & (2^31 - 1))
HALF_MASK = (1 << HALF) - 1
DEC0 = T.DecimalType(38, 0)


def _require_exact_products(trades: DataFrame) -> None:
    probe = trades.select(
        (F.lit(0).cast(PRICE) * F.lit(0).cast(PRICE)).alias("value")
    ).schema["value"]
    if not isinstance(probe.dataType, T.DecimalType) or probe.dataType.scale < 16:
        raise RuntimeError(
            f"price × quantity is typed {probe.dataType.simpleString()}, which rounds; the session "
            "needs spark.sql.decimalOperations.allowPrecisionLoss=false and decimal inputs"
        )


def _scaled(trades: DataFrame, name: str) -> Column:
    """`name` × 10^8 as an exact long: the extract's `{name}_e8` column (PostgreSQL computed it)
    or, for a decimal input, derived here (ANSI cast: a value that does not fit raises)."""
    if f"{name}_e8" in trades.columns:
        return F.col(f"{name}_e8").cast("long")
    return (F.col(name).cast(PRICE) * F.lit(SCALE)).cast("long")


def _wide_sum(value: Column, name: str) -> list[Column]:
    """Σ value without a 64-bit overflow: the high and low halves summed separately as longs
    (value = hi × 2^31 + lo exactly, also for negative values: arithmetic shift)."""
    return [
        F.sum(F.shiftright(value, HALF)).alias(f"{name}_hi"),
        F.sum(value.bitwiseAND(F.lit(HALF_MASK))).alias(f"{name}_lo"),
    ]


def _wide_total(name: str) -> Column:
    """The exact Σ from `_wide_sum`, as decimal(38,0) (in units of the input)."""
    return F.col(f"{name}_hi").cast(DEC0) * F.lit(Decimal(1 << HALF)) + F.col(
        f"{name}_lo"
    ).cast(DEC0)


def _limbs(value: Column) -> list[Column]:
    return [
        value.bitwiseAND(F.lit(LIMB_MASK)),
        F.shiftright(value, LIMB).bitwiseAND(F.lit(LIMB_MASK)),
        F.shiftright(value, 2 * LIMB),
    ]


def _product_sums(price: Column, quantity: Column) -> list[Column]:
    """Σ price×qty (both scaled longs, the product up to 126 bits) as five long sums by limb
    weight 2^(21k): every limb product is below 2^42, so each class stays below 2^44 per trade
    and a (symbol, minute) may hold half a million trades before a sum overflows — which
    raises under ANSI, never wraps."""
    p, q = _limbs(price), _limbs(quantity)
    classes: list[list[Column]] = [[] for _ in range(5)]
    for i in range(3):
        for j in range(3):
            classes[i + j].append(p[i] * q[j])
    columns = []
    for k, terms in enumerate(classes):
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        columns.append(F.sum(total).alias(f"value_c{k}"))
    return columns


def _product_total() -> Column:
    """Σ price×qty × 10^16 from the five limb sums, exact, as decimal(38,0)."""
    total = F.col("value_c0").cast(DEC0)
    for k in range(1, 5):
        total = total + F.col(f"value_c{k}").cast(DEC0) * F.lit(Decimal(1 << (LIMB * k)))
    return total


# The mergeable per-(symbol, minute) partial aggregate: long columns only, each merged by a sum,
# a min or a max (open/close by their ordering key). The batch builds it once per minute; the live
# query (live/) builds it per micro-batch and merges it with what bars_1m already holds. Both then
# go through `finalise_partials`: one definition of a fact row.
PARTIAL_SUMS = (
    "sum_p_hi", "sum_p_lo", "sum_q_hi", "sum_q_lo", "taker_q_hi", "taker_q_lo",
    *(f"value_c{k}" for k in range(5)), "trade_count",
)
PARTIAL_COLUMNS = (
    "min_p", "max_p", *PARTIAL_SUMS, "open_key", "open_p", "close_key", "close_p",
    "first_id_block", "last_id_block",
)
FACT_COLUMNS = (
    "symbol", "trade_minute", "min_price", "max_price", "avg_price", "total_quantity",
    "total_trade_value", "trade_count", "open_price", "close_price", "vwap", "taker_buy_quantity",
)


def minute_partials(
    trades: DataFrame, *, keys: tuple[str, ...] = (), extra: tuple[Column, ...] = ()
) -> DataFrame:
    """Trades → one partial aggregate per (symbol, trade_minute, *keys), columns PARTIAL_COLUMNS
    (plus `extra` aggregates). The per-row work is long arithmetic only: prices and quantities
    as exact integers of 10^-8 units (`price_e8`/`quantity_e8` from PostgreSQL, or derived from
    decimal columns), sums as split long sums."""
    _require_exact_products(trades)
    scaled = trades.select(
        F.col("symbol"),
        F.col("trade_id"),
        _scaled(trades, "price").alias("p"),
        _scaled(trades, "quantity").alias("q"),
        F.col("trade_time"),
        F.col("is_buyer_maker"),
        *(F.col(key) for key in keys),
    )
    keyed = scaled.withColumns(
        {
            "trade_minute": F.date_trunc("minute", F.col("trade_time")),
            # (time, trade id) packed into ONE long so that min_by/max_by stay in a hash
            # aggregate (a struct or a wide decimal key costs a sort or BigDecimal work per
            # row): microseconds within the minute (< 2^26) above the trade id's low 37 bits.
            # That orders exactly while a minute's ids share one 2^37 block; the finaliser
            # raises an error (never a silent misorder) for a minute that does not.
            "order_key": F.shiftleft(
                F.unix_micros("trade_time") - F.unix_micros(F.date_trunc("minute", "trade_time")),
                ID_BITS,
            ).bitwiseOR(F.col("trade_id").bitwiseAND(F.lit(ID_MASK))),
            "id_block": F.shiftright("trade_id", ID_BITS),
        }
    )
    taker_q = F.when(~F.col("is_buyer_maker"), F.col("q")).otherwise(F.lit(0))
    return keyed.groupBy("symbol", "trade_minute", *keys).agg(
        F.min("p").alias("min_p"),
        F.max("p").alias("max_p"),
        *_wide_sum(F.col("p"), "sum_p"),
        *_wide_sum(F.col("q"), "sum_q"),
        *_wide_sum(taker_q, "taker_q"),
        *_product_sums(F.col("p"), F.col("q")),
        F.count(F.lit(1)).cast("long").alias("trade_count"),
        F.min("order_key").alias("open_key"),
        F.min_by("p", "order_key").alias("open_p"),
        F.max("order_key").alias("close_key"),
        F.max_by("p", "order_key").alias("close_p"),
        F.min("id_block").alias("first_id_block"),
        F.max("id_block").alias("last_id_block"),
        *extra,
    )


def merge_partials(partials: DataFrame, *, extra: tuple[Column, ...] = ()) -> DataFrame:
    """Several partial aggregates of the same (symbol, trade_minute) → one: exactly the partial
    that one pass over all their trades gives (sums add, min/max and open/close by key)."""
    return partials.groupBy("symbol", "trade_minute").agg(
        F.min("min_p").alias("min_p"),
        F.max("max_p").alias("max_p"),
        *(F.sum(name).alias(name) for name in PARTIAL_SUMS),
        F.min("open_key").alias("open_key"),
        F.min_by("open_p", "open_key").alias("open_p"),
        F.max("close_key").alias("close_key"),
        F.max_by("close_p", "close_key").alias("close_p"),
        F.min("first_id_block").alias("first_id_block"),
        F.max("last_id_block").alias("last_id_block"),
        *extra,
    )


def finalise_partials(per_minute: DataFrame, *, keep: tuple[str, ...] = ()) -> DataFrame:
    """Partials → the fact row's columns (FACT_COLUMNS, without trade_date, then `keep`): the
    decimal results rebuilt with the same types and rounding as decimal arithmetic would give."""
    unit, unit2 = F.lit(UNIT), F.lit(UNIT2)

    def price(column: str) -> Column:
        return (F.col(column).cast(DEC0) * unit).cast(PRICE)

    # The exact sums as the decimal(38,8) / decimal(38,16) values decimal arithmetic gives.
    sums = per_minute.withColumns(
        {
            "sum_price": (_wide_total("sum_p") * unit).cast(QUANTITY_SUM),
            "total_quantity": (_wide_total("sum_q") * unit).cast(QUANTITY_SUM),
            "taker_buy_quantity": (_wide_total("taker_q") * unit).cast(QUANTITY_SUM),
            "total_trade_value": (_product_total() * unit2).cast(VALUE_SUM),
        }
    )
    ordered = F.col("first_id_block") == F.col("last_id_block")
    return sums.select(
        F.col("symbol"),
        F.col("trade_minute"),
        price("min_p").alias("min_price"),
        price("max_p").alias("max_price"),
        # what avg() of decimal(30,8) computes: Σ (decimal(38,8)) / count (decimal(20,0)),
        # typed decimal(34,12) — then the contract's decimal(30,12)
        (F.col("sum_price") / F.col("trade_count").cast(T.DecimalType(20, 0)))
        .cast(T.DecimalType(34, 12))
        .cast(MEAN)
        .alias("avg_price"),
        F.col("total_quantity"),
        F.col("total_trade_value"),
        F.col("trade_count").cast("long").alias("trade_count"),
        F.when(ordered, price("open_p"))
        .otherwise(F.raise_error(F.lit("trade ids of one minute span a 2^37 block")))
        .cast(PRICE)
        .alias("open_price"),
        price("close_p").alias("close_price"),
        F.when(
            F.col("total_quantity") != 0,
            (F.col("total_trade_value") / F.col("total_quantity")).cast(MEAN),
        ).alias("vwap"),
        F.col("taker_buy_quantity"),
        *(F.col(name) for name in keep),
    )


def build_fact_trades(trades: DataFrame, day: date) -> DataFrame:
    """One row per (symbol, minute) with trades; open/close by (trade_time, trade_id): the
    day's partial aggregates, finalised (the live bars use the same two functions)."""
    facts = finalise_partials(minute_partials(filter_day(trades, day)))
    return facts.select(*FACT_COLUMNS, F.lit(day).cast("date").alias("trade_date"))
