"""What the streamer reports: a log line every few seconds, the final summary, Prometheus."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from binance_etl.ingest.streamer import Streamer

logger = logging.getLogger(__name__)


@dataclass
class Counters:
    """Event-loop side counts (plain ints: only the loop thread writes them)."""

    received: int = 0  # trade events parsed from the stream
    accepted: int = 0  # new trades handed to the writer (stream and REST)
    duplicates: int = 0  # trade ids already accepted (overlaps, replays)
    malformed: int = 0  # frames that were not well-formed trades
    foreign: int = 0  # trades of symbols not subscribed
    lag_ms_sum: int = 0  # receipt - trade time, summed since the last log line
    lag_samples: int = 0


@dataclass(frozen=True)
class Summary:
    seconds: float
    received: int
    accepted: int
    duplicates: int
    malformed: int
    committed: int
    inserted: int
    uncommitted: int
    gaps_found: int
    gaps_filled: int
    gaps_lost: int
    still_missing: int
    rest_trades: int
    connects: int
    reconnects: int
    renewals: int
    watchdog_replacements: int
    db_retries: int
    lag_p50_ms: float | None  # event time -> commit, stream trades
    lag_p99_ms: float | None

    def lines(self) -> list[str]:
        rate = self.committed / self.seconds if self.seconds > 0 else 0.0
        return [
            f"streamed {self.seconds:.1f}s: {self.received} trades received, "
            f"{self.accepted} accepted, {self.committed} committed ({rate:,.0f}/s), "
            f"{self.inserted} new rows, {self.uncommitted} not committed",
            f"duplicates {self.duplicates}, malformed frames {self.malformed}, "
            f"gaps: {self.gaps_found} ids missing, {self.gaps_filled} filled, "
            f"{self.gaps_lost} lost, {self.still_missing} left for the next start "
            f"({self.rest_trades} trades from REST)",
            f"connections: {self.connects} opened, {self.reconnects} dropped, "
            f"{self.renewals} renewed, {self.watchdog_replacements} replaced by the watchdog; "
            f"database retries {self.db_retries}; event->commit lag p50 "
            f"{_ms(self.lag_p50_ms)}, p99 {_ms(self.lag_p99_ms)}",
        ]

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


class StreamerCollector(Collector):
    """Reads the live counters of a Streamer on every scrape."""

    def __init__(self, streamer: Streamer) -> None:
        self.streamer = streamer

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        summary = self.streamer.summary()
        counters = {
            "received": ("trades received from the stream", summary.received),
            "accepted": ("new trades handed to the writer", summary.accepted),
            "committed": ("trades committed to PostgreSQL", summary.committed),
            "duplicates": ("duplicate trades dropped", summary.duplicates),
            "malformed_frames": ("malformed frames skipped", summary.malformed),
            "gap_ids_found": ("trade ids found missing", summary.gaps_found),
            "gap_ids_filled": ("missing trade ids recovered", summary.gaps_filled),
            "gap_ids_lost": ("missing trade ids REST could not provide", summary.gaps_lost),
            "reconnects": ("dropped connections", summary.reconnects),
            "db_retries": ("database write retries", summary.db_retries),
        }
        for name, (text, value) in counters.items():
            yield CounterMetricFamily(f"binance_ingest_{name}", text, value=value)
        yield GaugeMetricFamily(
            "binance_ingest_queue_depth", "trades received, not yet committed",
            value=summary.uncommitted,
        )
        yield GaugeMetricFamily(
            "binance_ingest_missing_ids", "trade ids still missing", value=summary.still_missing
        )
        for name, lag in (("p50", summary.lag_p50_ms), ("p99", summary.lag_p99_ms)):
            if lag is not None:
                yield GaugeMetricFamily(
                    f"binance_ingest_commit_lag_{name}_ms",
                    f"event time to commit, {name} since start (ms)", value=lag,
                )


def serve_metrics(streamer: Streamer, port: int) -> tuple[object, object]:
    """Serve the streamer's metrics on `port`; returns (server, thread) for shutdown."""
    registry = CollectorRegistry()
    registry.register(StreamerCollector(streamer))
    server, thread = start_http_server(port, registry=registry)
    logger.info("Prometheus metrics on port %d", port)
    return server, thread
