"""The way users deploy: the wheel in a fresh virtual environment (with the pinned Airflow), only
`dags/etl_dags.py` in a fresh dags folder, commands run from a directory that is not the
repository with no PYTHONPATH — `airflow dags list` shows the DAG without import errors and
`airflow dags test` of one day loads the warehouse (tests/plugins/deploy.py builds it all)."""

from __future__ import annotations

import json
import time
import zipfile
from datetime import date
from pathlib import Path

import pytest

from binance_etl.db import connect
from etl.dagrules import DAG_ID
from tests.plugins.airflow import (
    SYMBOLS,
    expected_facts,
    insert_day,
    insert_sentinels,
    lake_partitions,
    warehouse_counts,
    warehouse_facts,
)
from tests.plugins.deploy import REPO, Deployed

pytestmark = pytest.mark.integration

DAY = date(2025, 2, 5)  # a day no other test of the session writes


def _airflow_env(deployed: Deployed, pg_url: str) -> dict[str, str]:
    """What a user's own Airflow has: its home, a dags folder, a metadata database (SQLite
    here), and the project's settings as environment variables. No repository file."""
    return deployed.env({
        "AIRFLOW_HOME": str(deployed.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(deployed.dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{deployed.airflow_home}/airflow.db",
        "DATABASE_URL": pg_url,
        "LAKE_URI": str(deployed.workdir / "lake"),
        "SYMBOLS": ",".join(SYMBOLS),
        "SPARK_MASTER": "local[2]",
        "SPARK_LOCAL_IP": "127.0.0.1",
        "AIRFLOW_START_DATE": "2025-01-01",
    })


def _ok(result, what: str) -> str:  # type: ignore[no-untyped-def]
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{what} exited {result.returncode}:\n{output[-4000:]}"
    return output


def test_the_wheel_holds_the_packages_and_nothing_of_the_checkout(deployed: Deployed):
    names = zipfile.ZipFile(deployed.wheel).namelist()
    tops = {name.split("/", 1)[0] for name in names if "/" in name}
    assert {"binance_etl", "etl"} <= tops
    assert not tops & {"dags", "tests", "scripts", "bench", "common"}
    # The code the venv imports is the installed copy, not the checkout's.
    result = deployed.run(
        ["python", "-c", "import etl, binance_etl, sys; print(etl.__file__); "
         "print(binance_etl.__file__); print(sys.path)"], deployed.env())
    output = _ok(result, "python -c import")
    files = output.splitlines()[:2]
    for file in files:
        assert Path(file).is_relative_to(deployed.venv), file
    assert str(REPO) not in output


def test_commands_and_console_scripts_run_from_the_venv(deployed: Deployed):
    env = deployed.env({"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    main = _ok(deployed.run(["python", "-m", "etl.main", "--help"], env), "python -m etl.main")
    assert "--date" in main
    batch = _ok(deployed.run(["binance-etl-batch", "--help"], env), "binance-etl-batch")
    assert "--date" in batch
    stream = _ok(deployed.run(["binance-etl-stream", "--help"], env), "binance-etl-stream")
    assert "--symbols" in stream


def test_airflow_lists_the_dag_and_runs_a_day_into_the_warehouse(deployed: Deployed, pg_url: str):
    env = _airflow_env(deployed, pg_url)
    timings = dict(deployed.timings)

    started = time.monotonic()
    _ok(deployed.run(["airflow", "db", "migrate"], env, timeout=300), "airflow db migrate")
    timings["airflow db migrate"] = time.monotonic() - started

    started = time.monotonic()
    # --local: parse the dags folder as the dag-processor does (nothing is serialized yet); an
    # import error makes Airflow print "Failed to load all files" (the `list-import-errors`
    # hint) beside the DAGs that did load.
    result = deployed.run(["airflow", "dags", "list", "--local", "-o", "json"], env)
    listed = _ok(result, "airflow dags list")
    assert "Failed to load" not in listed, listed
    dags = json.loads(result.stdout.strip().splitlines()[-1])
    assert [(d["dag_id"], Path(d["fileloc"]).name) for d in dags] == [(DAG_ID, "etl_dags.py")]
    timings["airflow dags list"] = time.monotonic() - started

    with connect(pg_url, autocommit=True) as conn:
        next_ids = insert_day(conn, DAY, per_symbol=300, seed=11)
        insert_sentinels(conn, DAY, next_ids)  # the stream passed the day's end: complete

    started = time.monotonic()
    result = deployed.run(["airflow", "dags", "test", DAG_ID, "--conf",
                           json.dumps({"date": DAY.isoformat()})], env, timeout=420)
    timings["airflow dags test (one day)"] = time.monotonic() - started
    output = _ok(result, "airflow dags test")
    print("deploy timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    assert "state=success" in output, output[-3000:]
    assert "ModuleNotFoundError" not in output

    partition = f"year={DAY:%Y}/month={DAY:%m}/day={DAY:%d}"
    for table in ("fact_trades", "dim_time", "dim_symbol"):
        assert partition in lake_partitions(deployed.workdir / "lake", table), table
    with connect(pg_url, autocommit=True) as conn:
        expected = expected_facts(conn, DAY)
        assert len(expected) > 100
        assert warehouse_facts(conn, DAY) == expected
        counts = warehouse_counts(conn, DAY)
    assert counts["dim_time"] == 24 * 60
    assert counts["fact_trades"] == len(expected)
