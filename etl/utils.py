"""Small pure helpers of the day batch: days, lake paths, JDBC URLs, identifiers, JSON."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import unquote, urlsplit

TABLES = ("dim_time", "dim_symbol", "fact_trades")
REPORT_NAME = "quality.json"
REPORTS_DIR = "quality_reports"
STAGING_DIR = "_staging"
IDENTIFIER_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class DayError(ValueError):
    """A day that cannot be processed (malformed or in the future)."""


def parse_day(text: str) -> date:
    """`YYYY-MM-DD` → date; anything else raises DayError with a readable message."""
    message = f"--date must be a UTC day as YYYY-MM-DD (got {text!r})"
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise DayError(message)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise DayError(message) from None


def check_not_future(day: date, now: datetime | None = None) -> None:
    """A day that has not started yet cannot be processed."""
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    if day > today:
        raise DayError(f"{day.isoformat()} is in the future (today is {today.isoformat()} UTC)")


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """[start, end) of the UTC day as aware datetimes."""
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def partition_suffix(day: date) -> str:
    """`year=2025/month=09/day=10` — zero-padded, as the lake contract says."""
    return f"year={day.year:04d}/month={day.month:02d}/day={day.day:02d}"


def validate_identifier(name: str) -> str:
    """A lower-case SQL identifier we are willing to splice into SQL text."""
    if not IDENTIFIER_RE.fullmatch(name):
        raise ValueError(f"not a safe SQL identifier: {name!r}")
    return name


@dataclass(frozen=True)
class LakeLocation:
    """Where the lake lives: a local folder or an S3 bucket + key prefix."""

    scheme: str  # "file" or "s3"
    root: str  # local absolute path, or the key prefix inside the bucket ("" for the bucket root)
    bucket: str = ""

    @property
    def is_s3(self) -> bool:
        return self.scheme == "s3"

    def key(self, *parts: str) -> str:
        """An S3 key (or a local path) under the lake root."""
        joined = "/".join(part.strip("/") for part in parts if part)
        if self.is_s3:
            return f"{self.root}/{joined}" if self.root else joined
        return f"{self.root.rstrip('/')}/{joined}"

    def uri(self, *parts: str) -> str:
        """A URI a person (or Redshift's COPY) can use: s3://bucket/key or a local path."""
        return f"s3://{self.bucket}/{self.key(*parts)}" if self.is_s3 else self.key(*parts)

    def partition(self, table: str, day: date) -> str:
        return self.key(table, partition_suffix(day))

    def staging(self, day: date, *parts: str) -> str:
        return self.key(STAGING_DIR, day.isoformat(), *parts)


def parse_lake_uri(uri: str) -> LakeLocation:
    """`./data/lake`, `file:///x`, `s3://bucket/prefix` or `s3a://bucket/prefix`."""
    parts = urlsplit(uri)
    if parts.scheme in ("s3", "s3a"):
        if not parts.netloc:
            raise ValueError(f"LAKE_URI {uri!r} names no bucket")
        return LakeLocation("s3", parts.path.strip("/"), parts.netloc)
    if parts.scheme == "file":
        path = unquote(parts.path)
    elif parts.scheme == "":
        path = uri
    else:
        raise ValueError(f"LAKE_URI {uri!r}: unsupported scheme {parts.scheme!r}")
    from pathlib import Path

    return LakeLocation("file", str(Path(path).expanduser().resolve()))


def jdbc_connection(url: str) -> tuple[str, dict[str, str]]:
    """`postgresql://user:pw@host:port/db?x=y` → (`jdbc:postgresql://host:port/db?x=y`, props)."""
    parts = urlsplit(url.replace("postgres://", "postgresql://", 1))
    if parts.scheme != "postgresql":
        raise ValueError("the raw store must be a postgresql:// URL")
    host = parts.hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    port = f":{parts.port}" if parts.port else ""
    database = parts.path.lstrip("/") or "postgres"
    query = f"?{parts.query}" if parts.query else ""
    props = {"user": unquote(parts.username or "postgres"), "driver": "org.postgresql.Driver"}
    if parts.password is not None:
        props["password"] = unquote(parts.password)
    return f"jdbc:postgresql://{host}{port}/{database}{query}", props


def jsonable(value: Any) -> Any:
    """Decimals as exact strings, dates/datetimes as ISO text, recursively."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value
