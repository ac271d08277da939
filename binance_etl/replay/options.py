"""Every option of the replay feed, in one dataclass shared by the CLI, the server and tests.

`FeedOptions` is the constructor argument of `FeedServer`; `parse_args` builds it from the
command line (`--drop-after-frames 500` for `drop_after_frames=500`) and `to_argv` turns it back
into flags, which is how `binance_etl.replay.testing.running_feed(**options)` starts a subprocess.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields

from binance_etl.replay.klines import KLINE_FAULTS
from binance_etl.settings import parse_symbols


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class FeedOptions:
    symbols: list[str] = field(default_factory=lambda: ["BTCUSDT", "ETHUSDT"],
                               metadata=_help("comma list of symbols the market trades"))
    rate: float = field(default=200.0, metadata=_help(
        "live mode: trades per second over all symbols together; 0 = as fast as clients read"))
    host: str = field(default="127.0.0.1", metadata=_help("address to listen on"))
    port: int = field(default=0, metadata=_help("TCP port for WebSocket and REST (0 = any free)"))
    seed: int = field(default=1, metadata=_help("seed of the generated market"))
    trade_file: str | None = field(default=None, metadata=_help(
        "replay this recorded market (CSV or JSONL) instead of generating one"))
    trade_log: str | None = field(default=None, metadata=_help(
        "write every trade the market produces to this file (CSV or JSONL)"))
    dumps_dir: str | None = field(default=None, metadata=_help(
        "serve <dir>/<SYMBOL>/<file> at /data/spot/daily/trades/<SYMBOL>/<file> and "
        "<dir>/klines/<SYMBOL>/1m/<file> at /data/spot/daily/klines/<SYMBOL>/1m/<file>"))
    max_trades: int | None = field(default=None, metadata=_help(
        "stop producing a symbol after this many trades"))
    start_paused: bool = field(default=False, metadata=_help(
        "produce nothing until GET /_replay/resume"))
    history_limit: int = field(default=500_000, metadata=_help(
        "trades kept per symbol for REST and /_replay/trades (oldest dropped beyond)"))
    chunk: int = field(default=512, metadata=_help(
        "fast mode: trades generated per symbol per step"))
    # Binance's connection rules.
    ping_interval: float = field(default=20.0, metadata=_help("seconds between server pings"))
    pong_timeout: float = field(default=60.0, metadata=_help(
        "drop a connection whose last ping stays unanswered this long"))
    max_lifetime: float = field(default=86_400.0, metadata=_help(
        "seconds a connection may live before the server closes it"))
    shutdown_notice: float = field(default=600.0, metadata=_help(
        "send serverShutdown this many seconds before a planned disconnect"))
    max_streams: int = field(default=1024, metadata=_help("streams per connection"))
    control_rate: int = field(default=5, metadata=_help(
        "incoming messages per second (control messages, pings, pongs) before a drop"))
    max_connections_5m: int = field(default=300, metadata=_help(
        "new connections per IP per 5 minutes before handshakes get HTTP 429"))
    weight_limit: int = field(default=6000, metadata=_help("REST request weight per minute"))
    # Faults.
    drop_after_seconds: float | None = field(default=None, metadata=_help(
        "cut every connection (no close frame) this many seconds after it opened"))
    drop_after_frames: int | None = field(default=None, metadata=_help(
        "cut every connection after it was sent this many trade frames"))
    duplicate_fraction: float = field(default=0.0, metadata=_help(
        "fraction of trade frames sent twice"))
    corrupt_fraction: float = field(default=0.0, metadata=_help(
        "fraction of trade frames replaced by a corrupt one (bad JSON, missing/garbage field)"))
    silent_after: float | None = field(default=None, metadata=_help(
        "each connection goes silent (open, nothing sent, pings unanswered) after N seconds"))
    silent_for: float = field(default=5.0, metadata=_help("how long a silence lasts"))
    rest_429_every: int | None = field(default=None, metadata=_help(
        "answer every Nth weighted REST request with 429 + Retry-After"))
    retry_after: int = field(default=1, metadata=_help("Retry-After seconds sent with a 429"))
    ban_seconds: int = field(default=5, metadata=_help(
        "418 ban length for a client that ignores Retry-After"))
    klines_fault: str | None = field(default=None, metadata=_help(
        "REST klines disagree with the trades: kline-off (one close 1e-8 off) or trade-missing "
        "(one trade counted that was never published)"))

    def __post_init__(self) -> None:
        self.symbols = parse_symbols(self.symbols)
        if self.rate < 0:
            raise ValueError("rate must be >= 0")
        for name in ("duplicate_fraction", "corrupt_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.klines_fault not in (None, *KLINE_FAULTS):
            raise ValueError(f"klines_fault must be one of {', '.join(KLINE_FAULTS)}")
        if self.max_streams < 1 or self.control_rate < 1 or self.chunk < 1:
            raise ValueError("max_streams, control_rate and chunk must be >= 1")

    @property
    def fast(self) -> bool:
        return self.rate == 0


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _arg_type(annotation: str) -> type:
    if annotation.startswith("float"):
        return float
    if annotation.startswith("int"):
        return int
    return str


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m binance_etl.replay",
        description="A local Binance-compatible spot feed: WebSocket trade streams and REST.")
    for spec in fields(FeedOptions):
        flag = _flag(spec.name)
        help_text = spec.metadata.get("help", "")
        if spec.type == "bool":
            parser.add_argument(flag, dest=spec.name, action="store_true", help=help_text)
        elif spec.name == "symbols":
            parser.add_argument(flag, dest=spec.name, default="BTCUSDT,ETHUSDT", help=help_text)
        else:
            default = None if spec.default is MISSING else spec.default
            parser.add_argument(flag, dest=spec.name, type=_arg_type(str(spec.type)),
                                default=default, help=f"{help_text} (default {default})")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> FeedOptions:
    parser = build_parser()
    namespace = parser.parse_args(argv)
    try:
        return FeedOptions(**vars(namespace))
    except ValueError as error:
        parser.error(str(error))
        raise  # parser.error exits; this keeps type checkers informed


def to_argv(options: FeedOptions) -> list[str]:
    """Flags that make `parse_args` rebuild `options` (defaults left out)."""
    defaults = FeedOptions()
    argv: list[str] = []
    for spec in fields(FeedOptions):
        value = getattr(options, spec.name)
        if value == getattr(defaults, spec.name):
            continue
        if spec.type == "bool":
            if value:
                argv.append(_flag(spec.name))
        elif spec.name == "symbols":
            argv += [_flag(spec.name), ",".join(value)]
        elif value is not None:
            argv += [_flag(spec.name), str(value)]
    return argv
