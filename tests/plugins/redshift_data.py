"""Pytest fixtures for the Redshift Data API on moto's server (registered in tests/conftest.py).

The `s3_server` fixture's moto server (a thread of this process) also speaks `redshift-data`:
boto3 and the amazon provider's RedshiftDataHook reach it over HTTP like AWS. moto 5.2 records
each ExecuteStatement but never finishes one (its Status stays STARTED) and has no
BatchExecuteStatement. `redshift_data` adds exactly those two behaviours to that server, in
moto's own backend: a BatchExecuteStatement is recorded as one moto statement with its
sub-statements, and a statement finishes when it is first described — FAILED with the given
error text (later ones of the batch ABORTED) when one of its SQL texts contains a string the
test chose with `fail_when`, as Redshift would report it. No SQL is executed: tests assert the
recorded text. A statement's `ResultRows` is -1 ("not reported" in the Data API).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

REGION = "us-east-1"


@dataclass
class RedshiftDataServer:
    endpoint: str
    failures: dict[str, str] = field(default_factory=dict)

    def fail_when(self, sql_contains: str, error: str) -> None:
        """The first statement whose SQL contains `sql_contains` fails with `error`."""
        self.failures[sql_contains] = error

    def batches(self) -> list[Any]:
        """Every batch moto's backend holds, in the order they were submitted."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.redshiftdata.models import redshiftdata_backends

        statements = redshiftdata_backends[DEFAULT_ACCOUNT_ID][REGION].statements
        return [item for item in statements.values() if isinstance(item, _Batch)]


def _batch_class() -> type:
    from moto.redshiftdata.models import Statement

    class Batch(Statement):
        """A BatchExecuteStatement in moto's backend: the texts in order, one status each."""

        def __init__(self, sqls: list[str], workgroup_name: str | None,
                     statement_name: str | None, **kwargs: Any) -> None:
            super().__init__(query_string="; ".join(sqls), query_parameters=[], **kwargs)
            self.sqls = list(sqls)
            self.workgroup_name = workgroup_name
            self.statement_name = statement_name
            self.error: str | None = None
            subs: Any = [
                {"Id": f"{self.id}:{number}", "QueryString": sql, "Status": "SUBMITTED",
                 "ResultRows": -1, "HasResultSet": False}
                for number, sql in enumerate(self.sqls, start=1)
            ]
            self.sub_statements = subs

        def __iter__(self) -> Iterator[tuple[str, Any]]:
            yield from super().__iter__()
            yield "WorkgroupName", self.workgroup_name
            yield "StatementName", self.statement_name
            if self.error is not None:
                yield "Error", self.error

    return Batch


_Batch: Any = None


def _finish(statement: Any, failures: dict[str, str]) -> None:
    """STARTED -> FINISHED, or FAILED at the first text a failure rule matches."""
    if statement.status != "STARTED":
        return
    texts = statement.sqls if isinstance(statement, _Batch) else [statement.query_string]
    failed_at = None
    for index, sql in enumerate(texts):
        rule = next((rule for rule in failures if rule in sql), None)
        if rule is not None:
            failed_at, statement.error = index, failures[rule]
            break
    statement.status = "FINISHED" if failed_at is None else "FAILED"
    if isinstance(statement, _Batch):
        for index, sub in enumerate(statement.sub_statements):
            if failed_at is None or index < failed_at:
                sub["Status"] = "FINISHED"
            elif index == failed_at:
                sub.update(Status="FAILED", Error=statement.error)
            else:
                sub["Status"] = "ABORTED"


@pytest.fixture(scope="session")
def _redshift_data_session(s3_server: str) -> Iterator[RedshiftDataServer]:
    global _Batch
    from moto.redshiftdata.models import RedshiftDataAPIServiceBackend
    from moto.redshiftdata.responses import RedshiftDataAPIServiceResponse

    _Batch = _batch_class()
    server = RedshiftDataServer(s3_server)
    original_describe = RedshiftDataAPIServiceBackend.describe_statement

    def describe_statement(self: Any, statement_id: str) -> Any:
        statement = original_describe(self, statement_id)
        _finish(statement, server.failures)
        return statement

    def batch_execute_statement(self: Any) -> tuple[int, dict[str, str], str]:
        backend = self.redshiftdata_backend
        batch = _Batch(
            sqls=self._get_param("Sqls"),
            workgroup_name=self._get_param("WorkgroupName"),
            statement_name=self._get_param("StatementName"),
            cluster_identifier=self._get_param("ClusterIdentifier"),
            database=self._get_param("Database"),
            db_user=self._get_param("DbUser"),
            secret_arn=self._get_param("SecretArn"),
        )
        backend.statements[batch.id] = batch
        answer = {"Id": batch.id, "CreatedAt": batch.created_at, "Database": batch.database,
                  "ClusterIdentifier": batch.cluster_identifier, "DbUser": batch.db_user,
                  "SecretArn": batch.secret_arn, "WorkgroupName": batch.workgroup_name}
        return 200, {}, json.dumps({k: v for k, v in answer.items() if v is not None})

    patch = pytest.MonkeyPatch()
    patch.setattr(RedshiftDataAPIServiceBackend, "describe_statement", describe_statement)
    patch.setattr(RedshiftDataAPIServiceResponse, "batch_execute_statement",
                  batch_execute_statement, raising=False)
    try:
        yield server
    finally:
        patch.undo()


@pytest.fixture
def redshift_data(_redshift_data_session: RedshiftDataServer) -> Iterator[RedshiftDataServer]:
    """The moto server's Data API (see the module's docstring); failure rules reset after."""
    yield _redshift_data_session
    _redshift_data_session.failures.clear()
