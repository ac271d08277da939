"""The one typed settings object, read from the environment and `.env`.

A missing or malformed value stops the program at start with one line naming the variable
(`SettingsError`), never a traceback.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SYMBOL_RE = re.compile(r"^[A-Z0-9-_.]{1,20}$")
CONN_ID_RE = re.compile(r"^[\w.-]{1,250}$")  # what Airflow accepts as a connection id


class SettingsError(SystemExit):
    """A configuration problem, reported as one line naming the variable."""

    def __init__(self, message: str) -> None:
        super().__init__(f"configuration error: {message}")
        self.message = message


def parse_symbols(value: object) -> list[str]:
    """`btcusdt, ETHUSDT` -> ["BTCUSDT", "ETHUSDT"]; Binance symbol syntax, no duplicates."""
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, list | tuple):
        items = [str(part).strip() for part in value]
    else:
        raise ValueError("expected a comma-separated list of symbols")
    symbols: list[str] = []
    for item in items:
        if not item:
            continue
        symbol = item.upper()
        if not SYMBOL_RE.match(symbol):
            raise ValueError(f"{item!r} is not a Binance symbol (letters and digits, e.g. BTCUSDT)")
        if symbol not in symbols:
            symbols.append(symbol)
    if not symbols:
        raise ValueError("at least one symbol is required")
    return symbols


def _check_url(value: str | None, schemes: tuple[str, ...], name: str) -> str | None:
    if value is None or value == "":
        return None
    parts = urlsplit(value)
    if parts.scheme not in schemes or not (parts.netloc or parts.path):
        raise ValueError(f"{name} must start with one of {', '.join(s + '://' for s in schemes)}")
    return value.rstrip("/") if parts.scheme in ("http", "https", "ws", "wss") else value


class Settings(BaseSettings):
    """Every setting of the project (see `.env.example` and the README's table)."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    database_url: str | None = Field(default=None, description="raw trades store")
    symbols: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["BTCUSDT", "ETHUSDT"])
    binance_ws_url: str = "wss://stream.binance.com:9443"
    binance_rest_url: str = "https://api.binance.com"
    binance_data_url: str = "https://data.binance.vision"
    lake_uri: str = "./data/lake"
    s3_endpoint_url: str | None = None
    # The signing region of S3 (boto3 reads AWS_DEFAULT_REGION itself; Spark's s3a gets it here).
    aws_region: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"))
    warehouse_url: str | None = None
    redshift_iam_role: str | None = None
    spark_master: str = "local[*]"
    # A Spark Connect server (sc://host:15002): the batch's client connects to it instead of
    # starting a JVM. SPARK_MASTER then only tells the server (etl.connect_server) where to run.
    spark_remote: str | None = None

    # Optional knobs (documented in the README).
    local_pg_dir: str = ".local/postgres"
    trades_retention_days: int | None = Field(default=None, ge=1)
    partitions_ahead_days: int = Field(default=3, ge=0, le=60)
    gap_lookback_minutes: int = Field(default=60, ge=0)
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    batch_max_trades: int = Field(default=5000, ge=1)
    batch_max_ms: int = Field(default=200, ge=1)
    max_buffered_trades: int = Field(default=250_000, ge=1000)
    jdbc_partitions: int = Field(default=2, ge=1, le=64)
    jdbc_fetch_size: int = Field(default=50_000, ge=100)
    gap_fail_threshold: int = Field(default=0, ge=0)
    airflow_start_date: str = "2025-01-01"
    # Streamer connection supervision (ingest): a socket silent longer than WS_SILENCE_SECONDS is
    # replaced; a connection is renewed after WS_MAX_AGE_SECONDS (Binance cuts at 24 h);
    # reconnect back-off grows up to RECONNECT_MAX_SECONDS.
    ws_silence_seconds: float = Field(default=60.0, gt=0)
    ws_max_age_seconds: float = Field(default=23 * 3600.0, gt=0, le=24 * 3600.0)
    reconnect_max_seconds: float = Field(default=30.0, gt=0)
    # The DAG's wait for a complete raw day (issue 5): off for historical days loaded in bulk.
    airflow_wait_for_raw_day: bool = True
    airflow_raw_day_timeout_minutes: int = Field(default=360, ge=1)
    airflow_raw_day_poke_seconds: int = Field(default=300, ge=5)
    # Inside Airflow (issue 10): the lake's S3 and the Redshift warehouse come from Airflow
    # connections through the amazon provider's hooks (etl/airflow_connections.py).
    # AIRFLOW_AWS_CONN_ID empty = no connection: boto3's own credential chain and S3_ENDPOINT_URL.
    airflow_aws_conn_id: str = "aws_default"
    airflow_redshift_conn_id: str = "redshift_default"
    airflow_warehouse: Literal["settings", "redshift-data-api", "redshift-sql"] = "settings"
    # The day checked against Binance's own 1m klines (issue 12): fail, warn or off.
    exchange_check: Literal["fail", "warn", "off"] = "fail"

    @field_validator("exchange_check", mode="before")
    @classmethod
    def _exchange_check(cls, value: object) -> str:
        text = str(value).strip().lower()
        if text not in ("fail", "warn", "off"):
            raise ValueError("must be fail, warn or off")
        return text
    # The dashboard (issue 13): the longest range `GET /api/bars` serves, the age past which a
    # symbol's last stored trade marks it stale, and how many recent days the Days view lists.
    dashboard_max_range_days: int = Field(default=7, ge=1, le=366)
    dashboard_stale_seconds: float = Field(default=60.0, gt=0)
    dashboard_days: int = Field(default=7, ge=1, le=90)
    # The live minute bars (`python -m live`): its checkpoint (a local path or s3://; the only
    # memory of the query besides bars_1m itself) and how often it runs a micro-batch.
    live_checkpoint_uri: str = ".local/live/checkpoint"
    live_trigger_seconds: float = Field(default=1.0, gt=0, le=3600)

    @field_validator("symbols", mode="before")
    @classmethod
    def _symbols(cls, value: object) -> list[str]:
        return parse_symbols(value)

    @field_validator("database_url", "warehouse_url", mode="before")
    @classmethod
    def _pg_url(cls, value: str | None) -> str | None:
        return _check_url(value, ("postgresql", "postgres", "redshift"), "the URL")

    @field_validator("airflow_aws_conn_id", "airflow_redshift_conn_id", mode="before")
    @classmethod
    def _conn_id(cls, value: object, info: ValidationInfo) -> str:
        text = str(value or "").strip()
        if not text and info.field_name == "airflow_aws_conn_id":
            return ""  # the provider's convention: no connection, boto3's default chain
        if not CONN_ID_RE.fullmatch(text):
            raise ValueError("must be an Airflow connection id (letters, digits, _ . -)")
        return text

    @field_validator("binance_ws_url", mode="before")
    @classmethod
    def _ws_url(cls, value: str) -> str | None:
        return _check_url(value, ("ws", "wss"), "BINANCE_WS_URL")

    @field_validator("binance_rest_url", "binance_data_url", "s3_endpoint_url", mode="before")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return _check_url(value, ("http", "https"), "the URL")

    @field_validator("lake_uri", "live_checkpoint_uri", mode="before")
    @classmethod
    def _lake(cls, value: str) -> str:
        value = str(value).strip()
        if not value:
            raise ValueError("must not be empty")
        scheme = urlsplit(value).scheme
        if scheme not in ("", "file", "s3", "s3a"):
            raise ValueError("must be a local path, file://, s3:// or s3a://")
        return value.rstrip("/")

    @field_validator("aws_region", mode="before")
    @classmethod
    def _region(cls, value: object) -> str | None:
        text = str(value or "").strip()
        if text and not re.fullmatch(r"[a-z]{2}(-[a-z0-9]+)+", text):
            raise ValueError("must be an AWS region such as us-east-1 (AWS_REGION or "
                             "AWS_DEFAULT_REGION)")
        return text or None

    @field_validator("spark_master", mode="before")
    @classmethod
    def _spark(cls, value: str) -> str:
        if not re.match(r"^(local(\[(\*|\d+)\])?|spark://[^/]+)$", str(value)):
            raise ValueError("must be local[*], local[N] or spark://host:port")
        return str(value)

    @field_validator("spark_remote", mode="before")
    @classmethod
    def _spark_remote(cls, value: str | None) -> str | None:
        if value is None or str(value).strip() == "":
            return None
        value = str(value).strip()
        parts = urlsplit(value)
        try:
            port = parts.port
        except ValueError:
            port = -1
        # sc://host:port, optionally followed by Spark Connect's /;name=value parameters
        path_ok = parts.path in ("", "/") or parts.path.startswith("/;")
        if parts.scheme != "sc" or not parts.hostname or port == -1 or not path_ok:
            raise ValueError("must be sc://host:port, a Spark Connect server (sc://127.0.0.1:15002)")
        return value

    @property
    def warehouse_is_redshift(self) -> bool:
        return bool(self.warehouse_url) and str(self.warehouse_url).startswith("redshift://")


def _one_line(error: ValidationError) -> str:
    first = error.errors()[0]
    name = str(first["loc"][0]).upper() if first["loc"] else "setting"
    message = str(first["msg"]).removeprefix("Value error, ")
    value = first.get("input")
    shown = f" (got {value!r})" if isinstance(value, str | int) and len(str(value)) < 80 else ""
    return f"{name}: {message}{shown}"


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment and `.env`; raises SettingsError with one clear line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise SettingsError(_one_line(error)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
