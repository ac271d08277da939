"""Binance's 1m klines of a UTC day, per symbol: the daily dump first, REST when it is missing.

The dump (`{BINANCE_DATA_URL}/data/spot/daily/klines/<SYMBOL>/1m/<SYMBOL>-1m-YYYY-MM-DD.zip`)
is downloaded and SHA-256-verified with the backfill's code (`etl.backfill_fetch`), its CSV read
from the zip with the time unit (ms before 2025, µs from 2025-01-01) detected from the file
itself. Binance publishes a day's dump a day or so later, so for a recent day it answers 404 and
the day comes from REST instead (`GET /api/v3/klines`, two calls per symbol: 1,440 minutes at
1,000 per call). A day counts as available only when all 1,440 minutes are there; anything else
(offline, 404 and nothing on REST, a partial answer) is a reason, and the check is skipped.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import httpx

from binance_etl.klines import MINUTE_MS, Kline, KlineFormatError, parse_kline, rest_klines
from binance_etl.rest import RateLimitedRest, RestError
from etl.backfill_dump import DumpFormatError, TimeUnit, detect_time_unit, klines_url
from etl.backfill_fetch import ChecksumMismatch, DumpMissing, fetch_verified
from etl.utils import day_bounds

logger = logging.getLogger(__name__)

MINUTES_PER_DAY = 1440
ATTEMPTS = 3  # per request: the check must not hold the batch up for long when offline
TIMEOUT_S = 20.0


@dataclass(frozen=True)
class SymbolKlines:
    """One symbol's klines for the day and where they came from (`dump (µs)`, `rest`)."""

    klines: list[Kline]
    source: str


@dataclass
class DayKlines:
    """What could be had for the day: klines per symbol, and why the others are missing."""

    day: date
    symbols: dict[str, SymbolKlines] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)


def day_ms(day: date) -> tuple[int, int]:
    """The day's [start, end) in epoch milliseconds."""
    start, end = day_bounds(day)
    return int(start.timestamp()) * 1000, int(end.timestamp()) * 1000


def read_klines_zip(path: Path) -> tuple[list[Kline], TimeUnit]:
    """The klines of a daily klines dump (one CSV member, no header in Binance's files)."""
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        if len(members) != 1:
            raise DumpFormatError(f"{path.name}: expected one CSV member, got {len(members)}")
        text = archive.read(members[0]).decode("ascii")
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and not lines[0][:1].isdigit():
        lines.pop(0)  # a header line
    if not lines:
        return [], "ms"
    try:
        unit = detect_time_unit(int(lines[0].split(",", 1)[0]))
    except ValueError:
        raise DumpFormatError(f"{path.name}: line 1: bad open time") from None
    per_ms = 1000 if unit == "us" else 1
    klines = []
    for number, line in enumerate(lines, start=1):
        try:
            klines.append(parse_kline(line.split(","), per_ms))
        except KlineFormatError as error:
            raise DumpFormatError(f"{path.name}: line {number}: {error}") from None
    return klines, unit


def whole_day(klines: list[Kline], day: date) -> str | None:
    """None when `klines` are exactly the day's 1,440 minutes, else what is wrong."""
    start, _ = day_ms(day)
    minutes = [kline.open_ms for kline in klines]
    if minutes == [start + index * MINUTE_MS for index in range(MINUTES_PER_DAY)]:
        return None
    inside = sum(1 for minute in set(minutes) if 0 <= minute - start < MINUTES_PER_DAY * MINUTE_MS)
    return f"{inside} of {MINUTES_PER_DAY} minutes"


def _from_dump(client: httpx.Client, data_url: str, symbol: str, day: date,
               workdir: Path) -> SymbolKlines:
    fetched = fetch_verified(client, klines_url(data_url, symbol, day), workdir,
                             attempts=ATTEMPTS)
    try:
        klines, unit = read_klines_zip(fetched.path)
    except (zipfile.BadZipFile, UnicodeDecodeError) as error:
        raise DumpFormatError(f"{fetched.path.name}: {error}") from None
    finally:
        fetched.path.unlink(missing_ok=True)
    return SymbolKlines(klines, f"dump ({'µs' if unit == 'us' else 'ms'})")


def _dump_reason(error: Exception) -> str:
    if isinstance(error, DumpMissing):
        return f"dump not published ({error})"
    if isinstance(error, ChecksumMismatch):
        return f"dump checksum mismatch ({error})"
    if isinstance(error, DumpFormatError):
        return f"dump malformed ({error})"
    return f"dump unreachable ({type(error).__name__}: {error})"


async def _from_rest(rest_url: str, symbols: list[str], day: date) -> dict[str, list[Kline] | str]:
    start, end = day_ms(day)
    out: dict[str, list[Kline] | str] = {}
    rest = RateLimitedRest(rest_url, client=httpx.AsyncClient(timeout=TIMEOUT_S),
                           max_attempts=ATTEMPTS)
    try:
        for symbol in symbols:
            try:
                out[symbol] = await rest_klines(rest, symbol, start, end)
            except RestError as error:
                out[symbol] = f"REST unavailable ({error})"
                if error.status is None:  # transport: the host is down for every symbol
                    for other in symbols:
                        out.setdefault(other, out[symbol])
                    break
    finally:
        await rest.aclose()
    return out


def fetch_day_klines(data_url: str, rest_url: str, symbols: list[str], day: date) -> DayKlines:
    """The day's klines per symbol; never raises for an exchange that cannot be had."""
    result = DayKlines(day)
    reasons: dict[str, str] = {}
    with (
        httpx.Client(timeout=TIMEOUT_S, follow_redirects=True) as client,
        tempfile.TemporaryDirectory(prefix="klines-") as workdir,
    ):
        down: str | None = None  # the data host refused a connection: do not ask it again
        for symbol in symbols:
            if down is not None:
                reasons[symbol] = down
                continue
            try:
                got = _from_dump(client, data_url, symbol, day, Path(workdir))
            except (DumpMissing, ChecksumMismatch, DumpFormatError, httpx.HTTPError) as error:
                reasons[symbol] = _dump_reason(error)
                if isinstance(error, httpx.TransportError):
                    down = reasons[symbol]
                continue
            problem = whole_day(got.klines, day)
            if problem is None:
                result.symbols[symbol] = got
            else:
                reasons[symbol] = f"dump holds {problem}"
    if reasons:
        from_rest = asyncio.run(_from_rest(rest_url, list(reasons), day))
        for symbol, reason in reasons.items():
            answer = from_rest[symbol]
            problem = answer if isinstance(answer, str) else whole_day(answer, day)
            if problem is None and not isinstance(answer, str):
                result.symbols[symbol] = SymbolKlines(answer, "rest")
            else:
                shown = problem if isinstance(answer, str) else f"REST returned {problem}"
                result.unavailable[symbol] = f"{reason}; {shown}"
    for symbol, reason in result.unavailable.items():
        logger.warning("klines of %s for %s unavailable: %s", symbol, day, reason)
    return result


def fetch_rest_range(rest_url: str, symbol: str, start_ms: int, end_ms: int) -> list[Kline]:
    """Klines of one symbol opening in [start_ms, end_ms) from REST (raises RestError)."""

    async def run() -> list[Kline]:
        rest = RateLimitedRest(rest_url, client=httpx.AsyncClient(timeout=TIMEOUT_S),
                               max_attempts=ATTEMPTS)
        try:
            return await rest_klines(rest, symbol, start_ms, end_ms)
        finally:
            await rest.aclose()

    return asyncio.run(run())
