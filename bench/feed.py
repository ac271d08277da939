"""How many trade frames per second the replay feed pushes to one reader (the feed alone).

The feed runs in its own process in fast mode (`rate=0`: as fast as the reader takes them) and a
minimal picows client in this process counts frames on one combined connection; a second run
checks the fan-out to two connections. `python -m bench.feed [--seconds 5] [--symbols ...]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from binance_etl.replay.broadcast import stream_name
from binance_etl.replay.testing import running_feed

READ_BUFFER = 1024 * 1024
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "1000PEPEUSDT"]


class Counter(WSListener):  # type: ignore[misc]
    """Counts text frames; keeps the last one so the run can check it is a trade."""

    def __init__(self) -> None:
        self.frames = 0
        self.bytes = 0
        self.last = b""

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            self.frames += 1
            self.bytes += frame.payload_size
            if frame.last_in_buffer:
                self.last = frame.get_payload_as_bytes()
        elif frame.msg_type == WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _read(url: str, connections: int, warmup: float, seconds: float,
                feed_pid: int | None = None) -> dict[str, Any]:
    counters = [Counter() for _ in range(connections)]
    pairs = [await ws_connect(lambda c=counter: c, url, read_buffer_init_size=READ_BUFFER)
             for counter in counters]
    await asyncio.sleep(warmup)
    start_frames = [c.frames for c in counters]
    start_bytes = sum(c.bytes for c in counters)
    start_cpu = cpu_seconds(feed_pid) if feed_pid else 0.0
    started, reader_started = time.perf_counter(), time.process_time()
    await asyncio.sleep(seconds)
    elapsed = time.perf_counter() - started
    reader_cpu = time.process_time() - reader_started
    feed_cpu = cpu_seconds(feed_pid) - start_cpu if feed_pid else 0.0
    frames = [c.frames - s for c, s in zip(counters, start_frames, strict=True)]
    received_bytes = sum(c.bytes for c in counters) - start_bytes
    for transport, _ in pairs:
        transport.disconnect()
    last = orjson.loads(counters[0].last)
    if last["data"]["e"] != "trade":
        raise RuntimeError(f"unexpected frame {last}")
    produced = max(frames)  # every connection is sent the same trades
    return {"connections": connections, "seconds": round(elapsed, 2),
            "feed_cpu_share": round(feed_cpu / elapsed, 2),
            "reader_cpu_share": round(reader_cpu / elapsed, 2),
            "frames_per_feed_cpu_second": round(produced / feed_cpu) if feed_cpu else None,
            "frames_per_s_per_connection": round(min(frames) / elapsed),
            "frames_per_s_total": round(sum(frames) / elapsed),
            "mb_per_s": round(received_bytes / elapsed / 1e6, 1)}


def run(seconds: float = 5.0, symbols: list[str] | None = None, connections: int = 1,
        warmup: float = 1.0, chunk: int = 512) -> dict[str, Any]:
    """Start a fast-mode feed, read `connections` combined connections, return the figures."""
    symbols = symbols or SYMBOLS
    with running_feed(symbols=symbols, rate=0, chunk=chunk, history_limit=200_000) as feed:
        path = "/stream?streams=" + "/".join(stream_name(s) for s in symbols)
        result = asyncio.run(_read(feed.ws_url + path, connections, warmup, seconds,
                                   feed.process.pid))
        stats = feed.stats()
    result["symbols"] = len(symbols)
    result["produced"] = sum(s["produced"] for s in stats["symbols"].values())
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--symbols", default=",".join(SYMBOLS))
    parser.add_argument("--chunk", type=int, default=512)
    args = parser.parse_args(argv)
    symbols = args.symbols.split(",")
    print(f"replay feed, fast mode, {len(symbols)} symbols on one combined stream "
          f"(target >= 150,000 frames/s; the ingest target is 50,000 trades/s)")
    for connections in (1, 2):
        result = run(args.seconds, symbols, connections, chunk=args.chunk)
        print(f"  {connections} connection(s): {result['frames_per_s_per_connection']:>9,} "
              f"frames/s per connection, {result['frames_per_s_total']:>9,} total, "
              f"{result['mb_per_s']} MB/s over {result['seconds']} s; feed used "
              f"{result['feed_cpu_share']:.0%} of a core = "
              f"{result['frames_per_feed_cpu_second'] or 0:,} trades per feed CPU-second "
              f"(reader used {result['reader_cpu_share']:.0%}); "
              f"ratio to the 50,000/s ingest target: "
              f"{result['frames_per_s_per_connection'] / 50_000:.1f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
