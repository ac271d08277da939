"""Spark's s3a settings for an S3 checkpoint, in process and on the Spark Connect server, and the
region setting, without a server (the checkpoint itself: tests/integration/
test_live_s3_checkpoint.py)."""

from __future__ import annotations

import pytest

from binance_etl.settings import SettingsError, load_settings
from etl import connect_server
from etl.s3a import HADOOP_AWS_PACKAGE, hadoop_conf, s3a_uri
from live.main import checkpoint_location, spark_conf


def test_a_custom_http_endpoint_gets_path_style_and_no_tls() -> None:
    settings = load_settings(s3_endpoint_url="http://127.0.0.1:9000", aws_region="eu-west-1")
    conf = hadoop_conf(settings)
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:9000"
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "false"
    assert conf["spark.hadoop.fs.s3a.endpoint.region"] == "eu-west-1"
    assert not [key for key in conf if "key" in key or "secret" in key]  # never credentials


def test_aws_itself_and_an_https_endpoint_keep_tls() -> None:
    assert "spark.hadoop.fs.s3a.endpoint" not in hadoop_conf(load_settings(s3_endpoint_url=""))
    https = hadoop_conf(load_settings(s3_endpoint_url="https://minio.example:9000"))
    assert "spark.hadoop.fs.s3a.connection.ssl.enabled" not in https


def test_the_checkpoint_is_s3a_for_hadoop_and_local_paths_absolute() -> None:
    assert checkpoint_location("s3://bucket/live/cp") == "s3a://bucket/live/cp"
    assert s3a_uri("s3a://bucket/x") == "s3a://bucket/x"
    assert checkpoint_location("relative/cp").startswith("/")
    local = spark_conf(load_settings(live_checkpoint_uri="relative/cp"))
    assert not [key for key in local if "s3a" in key]
    s3 = spark_conf(load_settings(live_checkpoint_uri="s3://bucket/cp",
                                  s3_endpoint_url="http://127.0.0.1:9000"))
    assert s3["spark.hadoop.fs.s3a.path.style.access"] == "true"


def test_the_connect_server_gets_hadoop_aws_only_for_an_s3_checkpoint() -> None:
    def conf(**overrides: object) -> dict[str, str]:
        return connect_server.server_conf(load_settings(**overrides), "127.0.0.1", 15999)

    local = conf(live_checkpoint_uri="/data/cp")
    assert HADOOP_AWS_PACKAGE not in local["spark.jars.packages"]
    s3 = conf(live_checkpoint_uri="s3://bucket/cp", s3_endpoint_url="http://minio:9000")
    assert s3["spark.jars.packages"].split(",")[1] == HADOOP_AWS_PACKAGE
    assert s3["spark.jars.packages"].startswith("org.postgresql:postgresql:")
    assert s3["spark.hadoop.fs.s3a.endpoint"] == "http://minio:9000"
    assert s3["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "false"


def test_the_region_comes_from_either_aws_variable_and_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    assert load_settings().aws_region == "eu-central-1"
    monkeypatch.setenv("AWS_REGION", "us-west-2")  # the SDKs' own precedence
    assert load_settings().aws_region == "us-west-2"
    monkeypatch.setenv("AWS_REGION", "Frankfurt")
    with pytest.raises(SettingsError, match="AWS_REGION: must be an AWS region"):
        load_settings()
