"""The Redshift warehouse through the Redshift Data API (the amazon provider's RedshiftDataHook).

The Data API needs no network path from the workers to the cluster (Redshift Serverless and
private clusters) and no database password: it signs with AWS credentials (IAM), and names the
target as a cluster (with a database user for temporary credentials, or a Secrets Manager
secret) or a Serverless workgroup.

The day's statements go in ONE `BatchExecuteStatement`, which Redshift runs in order as a
single transaction (any failure rolls back all of them): the same all-or-nothing load as the
DB-API path. A batch takes no bound parameters, so `etl.redshift` renders the only value, the
day, from a `datetime.date`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from etl.load import Executed

logger = logging.getLogger(__name__)

MAX_BATCH = 40  # the Data API's limit of statements per BatchExecuteStatement
POLL_SECONDS = 5


class DataApiTargetError(ValueError):
    """The Redshift connection does not say where the Data API should run the statements."""


@dataclass(frozen=True)
class DataApiTarget:
    """Where the Data API runs statements: a database on a cluster or a Serverless workgroup."""

    database: str
    cluster_identifier: str | None = None
    workgroup_name: str | None = None
    db_user: str | None = None
    secret_arn: str | None = None

    def query_kwargs(self) -> dict[str, Any]:
        """The target part of `RedshiftDataHook.execute_query`'s arguments."""
        return {
            "database": self.database,
            "cluster_identifier": self.cluster_identifier,
            "workgroup_name": self.workgroup_name,
            "db_user": self.db_user,
            "secret_arn": self.secret_arn,
        }


def _text(value: object) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def target_from_connection(
    *, host: str | None, schema: str | None, login: str | None, extra: Mapping[str, Any]
) -> DataApiTarget:
    """The Data API target named by a `redshift` Airflow connection, read the way the provider's
    RedshiftSQLHook reads it for IAM: Database = the connection's schema; a Serverless
    workgroup from extra `serverless_work_group`; otherwise the cluster from extra
    `cluster_identifier` or the first label of the host; the database user from extra
    `db_user` or the login (clusters only: Serverless derives it from the IAM identity); a
    Secrets Manager secret from extra `secret_arn` instead of a database user. The
    connection's password is never used here."""
    database = _text(schema)
    if database is None:
        raise DataApiTargetError("no database (the connection's schema / Database field)")
    secret_arn = _text(extra.get("secret_arn"))
    workgroup = _text(extra.get("serverless_work_group"))
    if workgroup is not None:
        return DataApiTarget(database, workgroup_name=workgroup, secret_arn=secret_arn)
    cluster = _text(extra.get("cluster_identifier"))
    if cluster is None and _text(host) is not None:
        cluster = str(host).strip().split(".", 1)[0]
    if cluster is None:
        raise DataApiTargetError(
            "no cluster or workgroup (extra cluster_identifier or serverless_work_group, or host)"
        )
    db_user = None if secret_arn else _text(extra.get("db_user")) or _text(login)
    return DataApiTarget(database, cluster_identifier=cluster, db_user=db_user,
                         secret_arn=secret_arn)


def _one_line(text: object, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def failure_message(description: Mapping[str, Any], statements: Sequence[str]) -> str:
    """One line from a failed batch's DescribeStatement: which statement, and Redshift's error."""
    subs = list(description.get("SubStatements") or [])
    for number, sub in enumerate(subs, start=1):
        if sub.get("Status") in ("FAILED", "ABORTED") and sub.get("Error"):
            sql = statements[number - 1] if number <= len(statements) else sub.get("QueryString")
            return (f"Redshift Data API statement {number} of {len(statements)} "
                    f"{sub.get('Status')} ({_one_line(sql, 90)}): {_one_line(sub['Error'])}")
    error = description.get("Error") or "no error text"
    return (f"Redshift Data API batch {description.get('Status', 'FAILED')}: "
            f"{_one_line(error)}")


class DataApiRunner:
    """Runs statements as one BatchExecuteStatement through `RedshiftDataHook` and waits."""

    via = "data-api"

    def __init__(self, hook: Any, target: DataApiTarget, *, poll_seconds: int = POLL_SECONDS,
                 statement_name: str = "binance-etl") -> None:
        self.hook = hook
        self.target = target
        self.poll_seconds = poll_seconds
        self.statement_name = statement_name

    def run(self, statements: Sequence[str]) -> Executed:
        from airflow.providers.amazon.aws.hooks.redshift_data import (
            RedshiftDataQueryAbortedError,
            RedshiftDataQueryFailedError,
        )

        if not 1 <= len(statements) <= MAX_BATCH:
            raise ValueError(f"a Data API batch takes 1 to {MAX_BATCH} statements, "
                             f"not {len(statements)}")
        submitted = self.hook.execute_query(
            sql=list(statements),
            statement_name=self.statement_name,
            wait_for_completion=False,
            **self.target.query_kwargs(),
        )
        statement_id = submitted.statement_id
        logger.info("Redshift Data API batch %s: %d statements submitted", statement_id,
                    len(statements))
        try:
            self.hook.wait_for_results(statement_id, poll_interval=self.poll_seconds)
        except (RedshiftDataQueryFailedError, RedshiftDataQueryAbortedError):
            description = self.hook.conn.describe_statement(Id=statement_id)
            raise WarehouseStatementError(
                f"{failure_message(description, statements)}; the day's load was rolled back "
                f"(batch {statement_id})"
            ) from None
        description = self.hook.conn.describe_statement(Id=statement_id)
        subs = list(description.get("SubStatements") or [])
        rows = [int(sub.get("ResultRows", -1)) for sub in subs]
        if len(rows) != len(statements):
            raise WarehouseStatementError(
                f"Redshift Data API batch {statement_id} reports {len(rows)} statements; "
                f"{len(statements)} were submitted"
            )
        return Executed(rows, self.via, statement_id)


class WarehouseStatementError(RuntimeError):
    """A warehouse statement failed; the transaction was rolled back."""
