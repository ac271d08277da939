"""Recorded markets: trade files in CSV (with a header) or JSON Lines.

Both carry the same fields per trade: `symbol,id,price,qty,time,isBuyerMaker` (time in ms,
prices and quantities as decimal strings). The feed's `--trade-log` writes this format, so a
run can be replayed later with `--trade-file`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO

import orjson

from binance_etl.replay.frames import plain
from binance_etl.replay.market import Trade

FIELDS = ("symbol", "id", "price", "qty", "time", "isBuyerMaker")
EIGHT_PLACES = Decimal("1E-8")


class TradeFileError(ValueError):
    """A trade file that cannot be replayed; the message names the file and line."""


def _is_jsonl(path: Path) -> bool:
    return path.suffix.lower() in (".jsonl", ".ndjson", ".json")


def _decimal(text: object) -> Decimal:
    value = Decimal(str(text))
    if not value.is_finite() or value <= 0:
        raise InvalidOperation(text)
    return value.quantize(EIGHT_PLACES)


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _trade(row: dict[str, object]) -> Trade:
    return Trade(
        symbol=str(row["symbol"]).upper(),
        trade_id=int(str(row["id"])),
        price=_decimal(row["price"]),
        quantity=_decimal(row["qty"]),
        time_ms=int(str(row["time"])),
        is_buyer_maker=_bool(row["isBuyerMaker"]),
    )


def _rows(path: Path, handle: IO[str]) -> Iterable[tuple[int, dict[str, object]]]:
    if _is_jsonl(path):
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, orjson.loads(line)
    else:
        reader = csv.DictReader(handle)
        missing = set(FIELDS) - set(reader.fieldnames or ())
        if missing:
            raise TradeFileError(f"{path}: header lacks {', '.join(sorted(missing))}")
        for number, row in enumerate(reader, start=2):
            yield number, dict(row)


def read_trade_file(path: str | Path) -> dict[str, list[Trade]]:
    """Trades per symbol, in file order; ids must be consecutive and times non-decreasing."""
    path = Path(path)
    by_symbol: dict[str, list[Trade]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for number, row in _rows(path, handle):
            try:
                trade = _trade(row)
            except (KeyError, ValueError, InvalidOperation, TypeError) as error:
                raise TradeFileError(f"{path}:{number}: bad trade ({error!r})") from error
            trades = by_symbol.setdefault(trade.symbol, [])
            if trades and trade.trade_id != trades[-1].trade_id + 1:
                raise TradeFileError(
                    f"{path}:{number}: {trade.symbol} id {trade.trade_id} does not follow "
                    f"{trades[-1].trade_id} (Binance trade ids are consecutive per symbol)")
            if trades and trade.time_ms < trades[-1].time_ms:
                raise TradeFileError(f"{path}:{number}: {trade.symbol} time goes backwards")
            trades.append(trade)
    if not by_symbol:
        raise TradeFileError(f"{path}: no trades")
    return by_symbol


def format_row(trade: Trade) -> list[str]:
    return [trade.symbol, str(trade.trade_id), plain(trade.price), plain(trade.quantity),
            str(trade.time_ms), "true" if trade.is_buyer_maker else "false"]


class TradeWriter:
    """Appends trades to a CSV or JSONL trade file (the format `read_trade_file` reads)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._jsonl = _is_jsonl(self.path)
        self._handle = self.path.open("w", encoding="utf-8", newline="")
        self._csv = None if self._jsonl else csv.writer(self._handle, lineterminator="\n")
        if self._csv is not None:
            self._csv.writerow(FIELDS)

    def write(self, trades: Iterable[Trade]) -> None:
        if self._csv is not None:
            self._csv.writerows(format_row(trade) for trade in trades)
            return
        for trade in trades:
            record = {"symbol": trade.symbol, "id": trade.trade_id, "price": plain(trade.price),
                      "qty": plain(trade.quantity), "time": trade.time_ms,
                      "isBuyerMaker": trade.is_buyer_maker}
            self._handle.write(orjson.dumps(record).decode() + "\n")

    def flush(self) -> None:
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> TradeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_trade_file(path: str | Path, trades: Iterable[Trade]) -> None:
    with TradeWriter(path) as writer:
        writer.write(trades)
