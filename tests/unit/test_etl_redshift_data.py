"""Where the Redshift Data API runs the day's statements, read from a `redshift` connection's
fields, and the one line a failed batch becomes."""

from __future__ import annotations

import pytest

from etl.redshift_data import (
    DataApiTarget,
    DataApiTargetError,
    failure_message,
    target_from_connection,
)

HOST = "trades.abc123.eu-west-1.redshift.amazonaws.com"
ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:etl-AbCdEf"


@pytest.mark.parametrize(
    ("host", "login", "extra", "expected"),
    [
        (HOST, "etl", {}, DataApiTarget("dev", cluster_identifier="trades", db_user="etl")),
        (None, "etl", {"cluster_identifier": "other", "db_user": "loader"},
         DataApiTarget("dev", cluster_identifier="other", db_user="loader")),
        (HOST, "etl", {"secret_arn": ARN},
         DataApiTarget("dev", cluster_identifier="trades", secret_arn=ARN)),
        (None, "etl", {"is_serverless": True, "serverless_work_group": "wg"},
         DataApiTarget("dev", workgroup_name="wg")),
        (HOST, None, {"serverless_work_group": "wg", "secret_arn": ARN},
         DataApiTarget("dev", workgroup_name="wg", secret_arn=ARN)),
        (None, None, {"cluster_identifier": "trades"},
         DataApiTarget("dev", cluster_identifier="trades")),  # IAM identity as the user
    ],
    ids=["cluster-from-host", "cluster-from-extra", "cluster-secret", "serverless",
         "serverless-secret", "cluster-iam-identity"],
)
def test_target_from_connection(
    host: str | None, login: str | None, extra: dict[str, object], expected: DataApiTarget
) -> None:
    assert target_from_connection(host=host, schema="dev", login=login, extra=extra) == expected


def test_query_arguments_of_the_hook() -> None:
    target = DataApiTarget("dev", cluster_identifier="trades", db_user="etl")
    assert target.query_kwargs() == {
        "database": "dev", "cluster_identifier": "trades", "workgroup_name": None,
        "db_user": "etl", "secret_arn": None,
    }


@pytest.mark.parametrize(
    ("schema", "host", "extra", "message"),
    [
        (None, HOST, {}, "no database"),
        (" ", HOST, {}, "no database"),
        ("dev", None, {}, "no cluster or workgroup"),
        ("dev", "", {"cluster_identifier": ""}, "no cluster or workgroup"),
    ],
)
def test_target_needs_a_database_and_a_cluster_or_workgroup(
    schema: str | None, host: str | None, extra: dict[str, object], message: str
) -> None:
    with pytest.raises(DataApiTargetError, match=message):
        target_from_connection(host=host, schema=schema, login="etl", extra=extra)


def test_failure_names_the_statement_and_redshifts_error_on_one_line() -> None:
    statements = ["CREATE SCHEMA IF NOT EXISTS warehouse", "COPY warehouse.fact_trades FROM 's3://b/x/'"]
    description = {
        "Status": "FAILED", "Error": "ERROR: S3 access denied",
        "SubStatements": [
            {"Status": "FINISHED", "QueryString": statements[0]},
            {"Status": "FAILED", "QueryString": statements[1],
             "Error": "ERROR: S3 access denied\nDETAIL: the role cannot read the bucket"},
        ],
    }
    assert failure_message(description, statements) == (
        "Redshift Data API statement 2 of 2 FAILED (COPY warehouse.fact_trades FROM "
        "'s3://b/x/'): ERROR: S3 access denied DETAIL: the role cannot read the bucket"
    )
    assert failure_message({"Status": "ABORTED", "Error": "cancelled"}, statements) == (
        "Redshift Data API batch ABORTED: cancelled"
    )
