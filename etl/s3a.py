"""Spark's own S3 access (Hadoop's s3a connector), for what Spark itself writes to S3: the live
query's checkpoint when LIVE_CHECKPOINT_URI is `s3://` (the lake is written with boto3 instead).

- `hadoop-aws` (HADOOP_AWS_PACKAGE) comes from Maven Central through `spark.jars.packages`,
  with the AWS SDK bundle it needs (~690 MB, fetched once into the ivy cache; only a session
  that uses S3 asks for it). Its version is the Hadoop client that pyspark ships.
- Credentials: s3a's default chain, the same sources the lake's boto3 uses outside Airflow: the
  AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN) environment variables, then
  the instance's or container's IAM role. They are never copied into Spark's configuration.
  (s3a does not read `~/.aws` profiles: export the variables instead.)
- S3_ENDPOINT_URL (MinIO, a test server): path-style requests, TLS off for an http:// URL.
  AWS_REGION / AWS_DEFAULT_REGION names the signing region.

`check_access` asks the bucket once with boto3 before Spark starts, so a missing credential, an
unreachable endpoint or a missing bucket is one line instead of a JVM stack trace (and no
download of the SDK bundle for nothing).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from binance_etl.settings import Settings

HADOOP_AWS_PACKAGE = "org.apache.hadoop:hadoop-aws:3.5.0"  # pyspark 4.3 ships Hadoop 3.5.0
CHECK_TIMEOUT_SECONDS = 10


def jars_packages(base: str) -> str:
    """`spark.jars.packages` of a session that uses s3a: `base` (the JDBC driver) + hadoop-aws."""
    return f"{base},{HADOOP_AWS_PACKAGE}"


class S3AccessError(SystemExit):
    """S3 cannot be used as configured; the message is one line naming what and where."""


def is_s3(uri: str) -> bool:
    return urlsplit(uri).scheme in ("s3", "s3a")


def s3a_uri(uri: str) -> str:
    """`s3://bucket/prefix` spelled the way Hadoop's connector is registered (`s3a://`)."""
    return "s3a://" + uri.split("://", 1)[1] if is_s3(uri) else uri


def hadoop_conf(settings: Settings) -> dict[str, str]:
    """The `spark.hadoop.fs.s3a.*` settings of a session that reads or writes s3a:// paths."""
    conf = {"spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem"}
    if settings.aws_region:
        conf["spark.hadoop.fs.s3a.endpoint.region"] = settings.aws_region
    endpoint = settings.s3_endpoint_url
    if endpoint:
        conf["spark.hadoop.fs.s3a.endpoint"] = endpoint
        # MinIO and test servers serve buckets as paths, not as host names
        conf["spark.hadoop.fs.s3a.path.style.access"] = "true"
        if urlsplit(endpoint).scheme == "http":
            conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = "false"
    return conf


def check_access(uri: str, settings: Settings, what: str) -> None:
    """Raise S3AccessError (one line) unless the bucket of `uri` answers with the credentials
    and endpoint that the session will use. `what` names the setting (LIVE_CHECKPOINT_URI)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    bucket = urlsplit(uri).netloc
    if not bucket:
        raise S3AccessError(f"configuration error: {what}: {uri!r} names no bucket")
    where = settings.s3_endpoint_url or "AWS"
    session = boto3.session.Session(region_name=settings.aws_region)
    if session.get_credentials() is None:
        raise S3AccessError(f"{what} {uri}: no AWS credentials (set AWS_ACCESS_KEY_ID and "
                            "AWS_SECRET_ACCESS_KEY, or run with an IAM role)")
    config = Config(connect_timeout=CHECK_TIMEOUT_SECONDS, read_timeout=CHECK_TIMEOUT_SECONDS,
                    retries={"max_attempts": 2})
    client: Any = session.client("s3", endpoint_url=settings.s3_endpoint_url, config=config)
    try:
        client.head_bucket(Bucket=bucket)
    except NoCredentialsError:
        raise S3AccessError(f"{what} {uri}: no AWS credentials") from None
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", "")) or "error"
        reason = {"404": "the bucket does not exist", "NoSuchBucket": "the bucket does not exist",
                  "403": "access denied (check the credentials and the bucket's policy)"}.get(
                      code, f"{code}: {error}")
        raise S3AccessError(f"{what} {uri}: {reason} (S3 at {where})") from None
    except BotoCoreError as error:
        raise S3AccessError(f"{what} {uri}: S3 at {where} is unreachable: {error}") from None
