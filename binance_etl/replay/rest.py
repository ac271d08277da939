"""The feed's HTTP side: Binance's public REST endpoints, daily dump files, and `/_replay/*`
test controls. Pure request -> response; `binance_etl.replay.server` puts it on the wire."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import orjson

from binance_etl.replay.exchange import exchange_info
from binance_etl.replay.frames import rest_trades
from binance_etl.replay.klines import (
    MINUTE_MS,
    KlineFault,
    TradeUnits,
    build_klines,
    checksum_line,
    fault_klines_zip,
    rest_body,
)
from binance_etl.replay.limits import WeightLimiter
from binance_etl.replay.market import Market

# Binance request weights of the endpoints served here.
WEIGHTS = {"/api/v3/ping": 1, "/api/v3/time": 1, "/api/v3/exchangeInfo": 20,
           "/api/v3/trades": 25, "/api/v3/historicalTrades": 25, "/api/v3/klines": 2}
MAX_LIMIT = 1000
DUMP_PREFIX = "/data/spot/daily/trades/"
KLINES_PREFIX = "/data/spot/daily/klines/"
_DUMP_SYMBOL = re.compile(r"^[A-Z0-9]{1,20}$")
_DUMP_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")
JSON = "application/json;charset=UTF-8"


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class FeedControl(Protocol):
    """What `/_replay/*` asks of the running feed."""

    def stats(self) -> dict[str, object]: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def drop_connections(self) -> int: ...


class BadRequest(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def _json(status: int, value: object, headers: dict[str, str] | None = None) -> Response:
    return Response(status, orjson.dumps(value), {"Content-Type": JSON, **(headers or {})})


def _error(status: int, code: int, msg: str) -> Response:
    return _json(status, {"code": code, "msg": msg})


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _opt_int(query: dict[str, list[str]], name: str, low: int = 0,
             high: int | None = None) -> int | None:
    text = _one(query, name)
    if text is None or text == "":
        return None
    if not re.fullmatch(r"[0-9]{1,20}", text):
        raise BadRequest(-1100, f"Illegal characters found in parameter '{name}'; "
                                "legal range is '^[0-9]{1,20}$'.")
    value = int(text)
    if value < low or (high is not None and value > high):
        raise BadRequest(-1130, f"Data sent for parameter '{name}' is not valid.")
    return value


def _int(query: dict[str, list[str]], name: str, default: int, low: int = 0,
         high: int | None = None) -> int:
    value = _opt_int(query, name, low, high)
    return default if value is None else value


class RestApi:
    def __init__(self, market: Market, limiter: WeightLimiter, control: FeedControl,
                 dumps_dir: str | None = None, *, klines_fault: str | None = None) -> None:
        self.market = market
        self.klines_fault: KlineFault | None = (
            "kline-off" if klines_fault == "kline-off"
            else "trade-missing" if klines_fault == "trade-missing" else None)
        self.limiter = limiter
        self.control = control
        self.dumps_dir = Path(dumps_dir).resolve() if dumps_dir else None

    def handle(self, target: str, ip: str) -> Response:
        parts = urlsplit(target)
        path = parts.path.rstrip("/") or "/"
        query = parse_qs(parts.query, keep_blank_values=True)
        if path in WEIGHTS:
            return self._api(path, query, ip)
        if path.startswith(DUMP_PREFIX):
            return self._dump(path[len(DUMP_PREFIX):])
        if path.startswith(KLINES_PREFIX):
            return self._klines_dump(path[len(KLINES_PREFIX):])
        if path.startswith("/_replay/"):
            try:
                return self._control(path, query)
            except BadRequest as error:
                return _error(400, error.code, error.msg)
        return _error(404, -1000, f"Unknown path {path}")

    # Binance's API ---------------------------------------------------------------------------
    def _api(self, path: str, query: dict[str, list[str]], ip: str) -> Response:
        verdict = self.limiter.check(ip, WEIGHTS[path])
        headers = {"X-MBX-USED-WEIGHT-1M": str(verdict.used_weight),
                   "X-MBX-USED-WEIGHT": str(verdict.used_weight)}
        if verdict.status == 418:
            headers["Retry-After"] = str(verdict.retry_after)
            return _json(418, {"code": -1003, "msg": f"Way too many requests; IP({ip}) banned "
                               f"until {verdict.banned_until_ms}. Please use the websocket for "
                               "live updates to avoid bans."}, headers)
        if verdict.status == 429:
            headers["Retry-After"] = str(verdict.retry_after)
            return _json(429, {"code": -1003, "msg": f"Too many requests; current limit of "
                               f"IP({ip}) request weight is {self.limiter.limit} request weight "
                               "per 1 MINUTE. Please use WebSocket Streams for live updates to "
                               "avoid polling the API."}, headers)
        try:
            response = self._serve(path, query)
        except BadRequest as error:
            response = _error(400, error.code, error.msg)
        response.headers.update(headers)
        return response

    def _serve(self, path: str, query: dict[str, list[str]]) -> Response:
        if path == "/api/v3/ping":
            return _json(200, {})
        if path == "/api/v3/time":
            return _json(200, {"serverTime": time.time_ns() // 1_000_000})
        if path == "/api/v3/exchangeInfo":
            return _json(200, exchange_info(self._info_symbols(query),
                                            time.time_ns() // 1_000_000, self.limiter.limit))
        symbol = self._symbol(query)
        limit = _int(query, "limit", 500, 1, MAX_LIMIT)
        if path == "/api/v3/klines":
            return self._klines(symbol, query, limit)
        from_id = _opt_int(query, "fromId") if path == "/api/v3/historicalTrades" else None
        return Response(200, rest_trades(self.market.trades(symbol, from_id, limit)),
                        {"Content-Type": JSON})

    def _klines(self, symbol: str, query: dict[str, list[str]], limit: int) -> Response:
        """1m klines of the trades the market produced (`binance_etl.replay.klines`), from the
        first minute the tape holds in full up to the current (still open) minute."""
        interval = _one(query, "interval")
        if not interval:
            raise BadRequest(-1102, "Mandatory parameter 'interval' was not sent, was "
                                    "empty/null, or malformed.")
        if interval != "1m":
            raise BadRequest(-1120, "Invalid interval.")
        now_ms = time.time_ns() // 1_000_000
        tape = self.market.tapes[symbol]
        known = tape.known_from_ms
        start = _opt_int(query, "startTime")
        end = _opt_int(query, "endTime")
        last = min(now_ms if end is None else end, now_ms)
        last -= last % MINUTE_MS  # the open time of the last kline served
        if start is None:
            first = last - (limit - 1) * MINUTE_MS
        else:
            first = start + (-start) % MINUTE_MS  # klines opening at or after startTime
        if known is None or last < known:
            return _json(200, [])
        first = max(first, known)
        last = min(last, first + (limit - 1) * MINUTE_MS)
        previous = tape.before(first)
        units = (TradeUnits(trade.time_ms, int(trade.price.scaleb(8)),
                            int(trade.quantity.scaleb(8)), trade.is_buyer_maker)
                 for trade in tape.between(first, last + MINUTE_MS))
        rows = build_klines(units, first, last + MINUTE_MS,
                            int(previous.price.scaleb(8)) if previous else 0, self.klines_fault)
        return Response(200, rest_body(rows), {"Content-Type": JSON})

    def _symbol(self, query: dict[str, list[str]]) -> str:
        symbol = _one(query, "symbol")
        if not symbol:
            raise BadRequest(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, "
                                    "or malformed.")
        if symbol not in self.market.tapes:
            raise BadRequest(-1121, "Invalid symbol.")
        return symbol

    def _info_symbols(self, query: dict[str, list[str]]) -> list[str]:
        one, many = _one(query, "symbol"), _one(query, "symbols")
        if one is not None and many is not None:
            raise BadRequest(-1128, "Combination of optional parameters invalid.")
        if one is not None:
            wanted = [one]
        elif many is not None:
            try:
                parsed = orjson.loads(many)
            except orjson.JSONDecodeError:
                raise BadRequest(-1100, "Illegal characters found in parameter 'symbols'; "
                                        "legal range is '^\\[(\"[A-Z0-9-_.]{1,20}\"(,\"[A-Z0-9-_.]"
                                        "{1,20}\"){0,}){0,1}\\]$'.") from None
            if not isinstance(parsed, list) or not all(isinstance(s, str) for s in parsed):
                raise BadRequest(-1100, "Illegal characters found in parameter 'symbols'.")
            wanted = parsed
        else:
            return self.market.symbols
        if not wanted or any(symbol not in self.market.tapes for symbol in wanted):
            raise BadRequest(-1121, "Invalid symbol.")
        return wanted

    # Daily dump files -------------------------------------------------------------------------
    def _dump(self, rest: str) -> Response:
        pieces = rest.split("/")
        if self.dumps_dir is None or len(pieces) != 2:
            return Response(404, b"Not Found", {"Content-Type": "text/plain"})
        return self._file(self.dumps_dir, pieces[0], pieces[1])

    def _klines_dump(self, rest: str) -> Response:
        """`<SYMBOL>/1m/<file>` from `<dumps-dir>/klines/<SYMBOL>/1m/<file>`; with a klines
        fault the zip is spoiled on the way out and its `.CHECKSUM` made to match."""
        pieces = rest.split("/")
        if len(pieces) != 3 or pieces[1] != "1m" or self.dumps_dir is None:
            return Response(404, b"Not Found", {"Content-Type": "text/plain"})
        name, root = pieces[2], self.dumps_dir / "klines"
        if self.klines_fault is None:
            return self._file(root, pieces[0], "1m", name)
        zip_name = name.removesuffix(".CHECKSUM")
        response = self._file(root, pieces[0], "1m", zip_name)
        if response.status != 200:
            return response
        body = fault_klines_zip(response.body, self.klines_fault)  # deterministic bytes
        if name == zip_name:
            return Response(200, body, response.headers)
        return Response(200, checksum_line(body, zip_name), {"Content-Type": "text/plain"})

    def _file(self, root: Path, symbol: str, *rest: str) -> Response:
        name = rest[-1]
        if not _DUMP_SYMBOL.match(symbol) or not _DUMP_FILE.match(name) or ".." in name:
            return Response(404, b"Not Found", {"Content-Type": "text/plain"})
        file = root.joinpath(symbol, *rest)
        if not file.is_file():
            return Response(404, b"Not Found", {"Content-Type": "text/plain"})
        kind = "application/zip" if file.suffix == ".zip" else "text/plain"
        return Response(200, file.read_bytes(), {"Content-Type": kind})

    # Test controls ----------------------------------------------------------------------------
    def _control(self, path: str, query: dict[str, list[str]]) -> Response:
        action = path.removeprefix("/_replay/")
        if action == "stats":
            return _json(200, self.control.stats())
        if action == "trades":
            symbol = self._symbol(query)
            tape = self.market.tapes[symbol]
            from_id = _int(query, "fromId", tape.first_id or 1)
            limit = _int(query, "limit", 100_000, 1, 1_000_000)
            return Response(200, rest_trades(self.market.trades(symbol, from_id, limit)),
                            {"Content-Type": JSON})
        if action == "pause":
            self.control.pause()
            return _json(200, self.control.stats())
        if action == "resume":
            self.control.resume()
            return _json(200, self.control.stats())
        if action == "drop":
            return _json(200, {"dropped": self.control.drop_connections()})
        return _error(404, -1000, f"Unknown path {path}")
