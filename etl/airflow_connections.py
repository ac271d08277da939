"""Inside Airflow: the lake's S3 and the Redshift warehouse from Airflow connections.

The DAG's tasks call `clients_from_connections(settings)` and hand the result to
`etl.pipeline`; outside Airflow (`python -m etl.main`) nothing here runs and the settings
work as before (boto3 with S3_ENDPOINT_URL, WAREHOUSE_URL).

- Lake on S3: the amazon provider's `S3Hook` on AIRFLOW_AWS_CONN_ID (default `aws_default`,
  type `aws`: keys, role, region, `endpoint_url` for an S3-compatible store). Empty = no
  connection: boto3's own credential chain and S3_ENDPOINT_URL, as outside Airflow.
- Warehouse, AIRFLOW_WAREHOUSE=
  - `settings` (default): WAREHOUSE_URL, as outside Airflow;
  - `redshift-data-api`: `RedshiftDataHook` (AWS credentials of AIRFLOW_AWS_CONN_ID) on the
    target named by the `redshift` connection AIRFLOW_REDSHIFT_CONN_ID (default
    `redshift_default`; see `etl.redshift_data.target_from_connection`);
  - `redshift-sql`: `RedshiftSQLHook` on AIRFLOW_REDSHIFT_CONN_ID (password, or IAM with
    extra `{"iam": true}` and AWS credentials of AIRFLOW_AWS_CONN_ID).

Every connection the run needs is looked up when the task starts, so a missing or malformed
one fails the task at once with one line naming it and its setting (`ConnectionSetupError`,
a SettingsError: the DAG turns it into AirflowFailException, no retries). Messages name
connections and fields, never their values; Airflow masks the connections' passwords and
extras in task logs itself.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from binance_etl.settings import Settings, SettingsError
from etl.load import Executed, StatementRunner
from etl.pipeline import Clients
from etl.redshift_data import DataApiRunner, DataApiTargetError, target_from_connection
from etl.utils import parse_lake_uri

logger = logging.getLogger(__name__)


class ConnectionSetupError(SettingsError):
    """A connection the run needs is missing or malformed (one line, no secret)."""


def _connection(conn_id: str, setting: str, conn_type: str) -> Any:
    """The Airflow connection `conn_id` of type `conn_type` whose extra, if any, is a JSON
    object; ConnectionSetupError naming it otherwise."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    where = f"{setting}: Airflow connection {conn_id!r}"
    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        # A malformed AIRFLOW_CONN_* value also ends here: the secrets backends skip it.
        raise ConnectionSetupError(
            f"{where} is not defined (or its definition cannot be parsed)"
        ) from None
    except PermissionError:  # AirflowSecretsBackendAccessDenied
        raise ConnectionSetupError(f"{where}: the secrets backend denied access") from None
    if conn.conn_type != conn_type:
        raise ConnectionSetupError(
            f"{where} has type {conn.conn_type!r}; expected {conn_type!r}"
        )
    if conn.extra:
        try:
            extra = json.loads(conn.extra)
        except ValueError:
            extra = None
        if not isinstance(extra, dict):
            raise ConnectionSetupError(f"{where}: its extra is not a JSON object")
    return conn


def _aws_conn_id(settings: Settings) -> str | None:
    """The AWS connection id, checked; None = boto3's default chain (the provider's rule)."""
    conn_id = settings.airflow_aws_conn_id or None
    if conn_id is not None:
        _connection(conn_id, "AIRFLOW_AWS_CONN_ID", "aws")
    return conn_id


def _s3_client(aws_conn_id: str) -> Callable[[], Any]:
    def make() -> Any:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=aws_conn_id).get_conn()

    return make


class SqlHookRunner:
    """The provider's RedshiftSQLHook.run: every statement on one connection with autocommit
    off and one commit at the end (the connection is closed uncommitted on any error, so
    Redshift rolls the day back)."""

    via = "redshift-sql"

    def __init__(self, hook: Any) -> None:
        self.hook = hook

    def run(self, statements: Sequence[str]) -> Executed:
        rows = self.hook.run(
            list(statements),
            autocommit=False,
            handler=lambda cursor: cursor.rowcount,
            return_last=False,
        )
        return Executed([int(count) if isinstance(count, int) else -1 for count in rows],
                        self.via)


def _warehouse(settings: Settings, aws_conn_id: str | None) -> StatementRunner | None:
    mode = settings.airflow_warehouse
    if mode == "settings":
        return None
    conn_id = settings.airflow_redshift_conn_id
    conn = _connection(conn_id, "AIRFLOW_REDSHIFT_CONN_ID", "redshift")
    if not settings.redshift_iam_role:
        raise SettingsError(f"REDSHIFT_IAM_ROLE: required with AIRFLOW_WAREHOUSE={mode}")
    if mode == "redshift-sql":
        from airflow.providers.amazon.aws.hooks.redshift_sql import RedshiftSQLHook

        return SqlHookRunner(RedshiftSQLHook(redshift_conn_id=conn_id, aws_conn_id=aws_conn_id))
    from airflow.providers.amazon.aws.hooks.redshift_data import RedshiftDataHook

    try:
        target = target_from_connection(
            host=conn.host, schema=conn.schema, login=conn.login,
            extra=json.loads(conn.extra) if conn.extra else {},
        )
    except DataApiTargetError as error:
        raise ConnectionSetupError(
            f"AIRFLOW_REDSHIFT_CONN_ID: Airflow connection {conn_id!r}: {error}"
        ) from None
    return DataApiRunner(RedshiftDataHook(aws_conn_id=aws_conn_id), target)


def clients_from_connections(settings: Settings) -> Clients:
    """The lake's S3 client and the warehouse's runner from Airflow connections (checked now)."""
    s3_lake = parse_lake_uri(settings.lake_uri).is_s3
    needs_aws = s3_lake or settings.airflow_warehouse != "settings"
    aws_conn_id = _aws_conn_id(settings) if needs_aws else None
    s3 = None
    if s3_lake and aws_conn_id is not None:
        if settings.s3_endpoint_url:
            logger.warning("S3_ENDPOINT_URL is not used inside Airflow: the connection %r names "
                           "the endpoint (extra endpoint_url)", aws_conn_id)
        s3 = _s3_client(aws_conn_id)
    return Clients(s3=s3, redshift=_warehouse(settings, aws_conn_id))
