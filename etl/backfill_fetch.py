"""Downloading one daily dump and its `.CHECKSUM`, verifying SHA-256 while the bytes arrive.

Used for the trade dumps (the backfill) and the 1m klines dumps (the exchange check) alike:
`fetch_verified` takes any dump URL, `fetch_dump` is the trade dump of a symbol and day.

The zip goes to a temporary file (a zip needs random access to its central directory), hashed
as it is written; nothing is unpacked to disk. Transport errors and 5xx answers are retried
with backoff; a 404 is a missing day (Binance has not published it, or the symbol did not
trade then) and is not retried.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from etl.backfill_dump import checksum_url, dump_file_name, dump_url, parse_checksum

logger = logging.getLogger(__name__)

DOWNLOAD_CHUNK = 1 << 20


class DumpMissing(Exception):
    """The day's file (or its checksum) is not published: HTTP 404."""

    def __init__(self, url: str) -> None:
        super().__init__(f"HTTP 404 for {url.rsplit('/', 1)[-1]}")
        self.url = url


class ChecksumMismatch(Exception):
    """The downloaded zip's SHA-256 differs from the published one."""


@dataclass(frozen=True)
class FetchedDump:
    path: Path
    sha256: str
    size: int


ByteProgress = Callable[[int, int | None], None]  # (bytes so far, total or None)


def _retryable(error: BaseException) -> bool:
    if isinstance(error, httpx.HTTPStatusError):
        return error.response.status_code >= 500 or error.response.status_code == 429
    return isinstance(error, httpx.TransportError)


def _retrying(attempts: int) -> Retrying:
    return Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.5, max=8),
        retry=retry_if_exception(_retryable),
        reraise=True,
        before_sleep=lambda state: logger.warning(
            "download failed (%s), attempt %d; retrying",
            state.outcome.exception() if state.outcome else "?", state.attempt_number,
        ),
    )


def _raise_for_status(response: httpx.Response, url: str) -> None:
    if response.status_code == 404:
        raise DumpMissing(url)
    response.raise_for_status()


def fetch_checksum(client: httpx.Client, base_url: str, symbol: str, day: date,
                   attempts: int = 3) -> str:
    return _checksum(client, checksum_url(base_url, symbol, day), dump_file_name(symbol, day),
                     attempts)


def _checksum(client: httpx.Client, url: str, file_name: str, attempts: int) -> str:
    for attempt in _retrying(attempts):
        with attempt:
            response = client.get(url)
            _raise_for_status(response, url)
    return parse_checksum(response.text, file_name)


def download(client: httpx.Client, url: str, dest: Path, progress: ByteProgress | None = None,
             attempts: int = 3) -> tuple[str, int]:
    """Stream `url` into `dest`; returns (sha256 hex, size). Restarts from zero on a retry."""
    for attempt in _retrying(attempts):
        with attempt:
            digest = hashlib.sha256()
            size = 0
            with client.stream("GET", url) as response, dest.open("wb") as out:
                _raise_for_status(response, url)
                length = response.headers.get("content-length")
                total = int(length) if length and length.isdigit() else None
                for chunk in response.iter_bytes(DOWNLOAD_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    if progress is not None:
                        progress(size, total)
    return digest.hexdigest(), size


def fetch_dump(client: httpx.Client, base_url: str, symbol: str, day: date, directory: Path,
               progress: ByteProgress | None = None, attempts: int = 3) -> FetchedDump:
    """The verified zip of one (symbol, day) in `directory`.

    Raises DumpMissing (404), ChecksumMismatch, DumpFormatError (a malformed .CHECKSUM) or
    httpx errors once the retries are spent.
    """
    return fetch_verified(client, dump_url(base_url, symbol, day), directory, progress, attempts)


def fetch_verified(client: httpx.Client, url: str, directory: Path,
                   progress: ByteProgress | None = None, attempts: int = 3) -> FetchedDump:
    """The zip at `url` in `directory`, verified against `url + ".CHECKSUM"` (same errors as
    `fetch_dump`)."""
    file_name = url.rsplit("/", 1)[-1]
    expected = _checksum(client, url + ".CHECKSUM", file_name, attempts)
    path = directory / file_name
    sha256, size = download(client, url, path, progress, attempts)
    if sha256 != expected:
        path.unlink(missing_ok=True)
        raise ChecksumMismatch(
            f"SHA-256 of {path.name} is {sha256[:16]}…, the published checksum is {expected[:16]}…"
        )
    return FetchedDump(path, sha256, size)
