"""The Parquet lake: stage a day out of sight, then swap it into place.

Layout: `{LAKE_URI}/{table}/year=YYYY/month=MM/day=DD/part-*.parquet`, the quality report at
`{LAKE_URI}/quality_reports/year=YYYY/month=MM/day=DD/quality.json`, and the day's staging area
at `{LAKE_URI}/_staging/YYYY-MM-DD/` (no reader looks there).

The day's three tables are small (the facts are one row per symbol and minute), so they are
collected from Spark as Arrow and written here with pyarrow, one file per table and day.

Visibility:
- local lake: the files are written into the staging folder on the same file system;
  publishing renames the old partition folder away and the staged one into place (two
  renames), so a reader sees the old day or the new one, never a half-written one (between
  the two renames, for microseconds, the folder is absent; a crash there leaves it absent
  until the rerun).
- S3 lake: the files are uploaded with boto3 under `_staging/`; publishing copies them
  server-side into the partition (new file names: each write names its file uniquely) and
  only then deletes the partition's previous objects. A reader listing the partition in that
  short window can see both the old and the new files; S3 has no atomic rename, so a reader
  that needs strict snapshots should read through the warehouse, which is loaded in one
  transaction.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import uuid
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from etl.utils import REPORT_NAME, REPORTS_DIR, STAGING_DIR, LakeLocation, partition_suffix

logger = logging.getLogger(__name__)

# What Spark's own writer produces: snappy pages, microsecond timestamps marked as UTC instants
# (Parquet TIMESTAMP(MICROS, isAdjustedToUTC=true)), decimals as fixed-length byte arrays.
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "snappy",
    "coerce_timestamps": "us",
    "allow_truncated_timestamps": False,
}


def s3_client(endpoint_url: str | None) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint_url)


class Lake:
    """One lake (local folder or S3 prefix) and the operations the batch needs.

    The S3 client comes from `s3_client` when given (inside Airflow: the amazon provider's
    S3Hook on an Airflow connection), else from boto3's own credential chain and
    `s3_endpoint_url`. It is made on first use: a local lake never makes one.
    """

    def __init__(
        self,
        location: LakeLocation,
        *,
        s3_endpoint_url: str | None = None,
        s3_client: Callable[[], Any] | None = None,
    ) -> None:
        self.location = location
        self.s3_endpoint_url = s3_endpoint_url
        self._s3_factory = s3_client
        self._s3: Any = None

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            factory = self._s3_factory
            self._s3 = factory() if factory is not None else s3_client(self.s3_endpoint_url)
        return self._s3

    # -- listing ---------------------------------------------------------------------------
    def _list(self, prefix: str) -> list[tuple[str, int]]:
        """(key or path, size) of every file under `prefix`, sorted."""
        if self.location.is_s3:
            found: list[tuple[str, int]] = []
            paginator = self.s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.location.bucket, Prefix=prefix + "/"):
                found.extend((item["Key"], int(item["Size"])) for item in page.get("Contents", []))
            return sorted(found)
        root = Path(prefix)
        if not root.is_dir():
            return []
        files = (path for path in root.rglob("*") if path.is_file())
        return sorted((str(path), path.stat().st_size) for path in files)

    def partition_files(self, table: str, day: date) -> list[tuple[str, int]]:
        """The published Parquet files of one table and day."""
        files = self._list(self.location.partition(table, day))
        return [(name, size) for name, size in files if name.endswith(".parquet")]

    def partition_uri(self, table: str, day: date) -> str:
        return self.location.uri(table, partition_suffix(day)) + "/"

    # -- staging ---------------------------------------------------------------------------
    def clear_staging(self, day: date) -> None:
        prefix = self.location.staging(day)
        if self.location.is_s3:
            self._delete_keys([key for key, _ in self._list(prefix)])
        elif Path(prefix).exists():
            shutil.rmtree(prefix)

    def stage(self, day: date, tables: dict[str, pa.Table]) -> dict[str, Any]:
        """Write each table's day as one Parquet file into the staging area; returns files and
        bytes per table. The tables are the day's small results (Arrow, collected from Spark):
        writing them here costs milliseconds where a Spark write job per table cost a second."""
        self.clear_staging(day)
        written: dict[str, Any] = {}
        for table, data in tables.items():
            name = f"part-00000-{uuid.uuid4()}.snappy.parquet"  # unique per write, like Spark
            key = self.location.staging(day, table, name)
            if self.location.is_s3:
                buffer = io.BytesIO()
                pq.write_table(data, buffer, **PARQUET_OPTIONS)
                body = buffer.getvalue()
                self.s3.put_object(Bucket=self.location.bucket, Key=key, Body=body)
                size = len(body)
            else:
                path = Path(key)
                path.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(data, path, **PARQUET_OPTIONS)
                size = path.stat().st_size
            written[table] = {"files": 1, "bytes": size, "rows": data.num_rows}
        logger.info("staged %s: %s", day, written)
        return written

    def write_staged_report(self, day: date, report: dict[str, Any]) -> str:
        return self._write_json(self.location.staging(day, REPORT_NAME), report)

    def read_staged_report(self, day: date) -> dict[str, Any] | None:
        return self._read_json(self.location.staging(day, REPORT_NAME))

    def read_published_report(self, day: date) -> dict[str, Any] | None:
        return self._read_json(self.location.key(REPORTS_DIR, partition_suffix(day), REPORT_NAME))

    def staged_files(self, day: date, table: str) -> list[tuple[str, int]]:
        files = self._list(self.location.staging(day, table))
        return [(name, size) for name, size in files if name.endswith(".parquet")]

    # -- publishing ------------------------------------------------------------------------
    def publish(self, day: date, tables: tuple[str, ...]) -> dict[str, Any]:
        """Swap the staged day into place, table by table, then the report; clears staging."""
        published: dict[str, Any] = {}
        for table in tables:
            staged = self.staged_files(day, table)
            if not staged:
                raise FileNotFoundError(f"nothing staged for {table} on {day}")
            if self.location.is_s3:
                self._publish_s3(day, table, staged)
            else:
                self._publish_local(day, table)
            files = self.partition_files(table, day)
            published[table] = {
                "uri": self.partition_uri(table, day),
                "files": len(files),
                "bytes": sum(size for _, size in files),
            }
        report = self.read_staged_report(day)
        if report is not None:
            self._write_json(
                self.location.key(REPORTS_DIR, partition_suffix(day), REPORT_NAME), report
            )
        self.clear_staging(day)
        logger.info("published %s: %s", day, published)
        return published

    def _publish_local(self, day: date, table: str) -> None:
        staged = Path(self.location.staging(day, table))
        final = Path(self.location.partition(table, day))
        final.parent.mkdir(parents=True, exist_ok=True)
        trash = Path(self.location.key(STAGING_DIR, f"trash-{uuid.uuid4().hex}"))
        if final.exists():
            final.rename(trash)
        staged.rename(final)
        if trash.exists():
            shutil.rmtree(trash)

    def _publish_s3(self, day: date, table: str, staged: list[tuple[str, int]]) -> None:
        bucket = self.location.bucket
        prefix = self.location.partition(table, day)
        old = {key for key, _ in self._list(prefix)}
        new: set[str] = set()
        for key, _ in staged:
            target = f"{prefix}/{key.rsplit('/', 1)[-1]}"
            self.s3.copy_object(Bucket=bucket, Key=target,
                                CopySource={"Bucket": bucket, "Key": key})
            new.add(target)
        self._delete_keys(sorted(old - new))

    # -- objects ---------------------------------------------------------------------------
    def _delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            answer = self.s3.delete_objects(
                Bucket=self.location.bucket,
                Delete={"Objects": [{"Key": key} for key in chunk], "Quiet": True},
            )
            if answer.get("Errors"):
                raise RuntimeError(f"S3 refused to delete {len(answer['Errors'])} object(s): "
                                   f"{answer['Errors'][0]}")

    def _write_json(self, key: str, document: dict[str, Any]) -> str:
        body = json.dumps(document, indent=2, sort_keys=True).encode()
        if self.location.is_s3:
            self.s3.put_object(Bucket=self.location.bucket, Key=key, Body=body,
                               ContentType="application/json")
            return f"s3://{self.location.bucket}/{key}"
        path = Path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(body)
        tmp.replace(path)
        return str(path)

    def _read_json(self, key: str) -> dict[str, Any] | None:
        if self.location.is_s3:
            try:
                answer = self.s3.get_object(Bucket=self.location.bucket, Key=key)
            except self.s3.exceptions.NoSuchKey:
                return None
            document = json.loads(answer["Body"].read())
        else:
            path = Path(key)
            if not path.exists():
                return None
            document = json.loads(path.read_text())
        if not isinstance(document, dict):
            raise ValueError(f"{key} is not a JSON object")
        return document

    def read_bytes(self, name: str) -> bytes:
        """One file's content (a key from `partition_files`)."""
        if self.location.is_s3:
            answer = self.s3.get_object(Bucket=self.location.bucket, Key=name)
            return bytes(answer["Body"].read())
        return Path(name).read_bytes()
