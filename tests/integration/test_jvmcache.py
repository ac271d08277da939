"""The JVM class-data archive for real: `python -m etl.jvmcache` creates it, a driver JVM maps
it (`-Xshare:on` refuses to start otherwise), and a garbage file in its place is ignored."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from etl import jvmcache
from etl.spark import DRIVER_JAVA_OPTIONS, POSTGRES_JDBC_PACKAGE

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]

# A session built by `build_session` (argv[2], if given, is appended to the driver's JVM
# options), one tiny job if argv[1] is "job", and the options the driver JVM was started with.
SESSION = """
import sys
from etl.spark import build_session
extra = sys.argv[2].split() if len(sys.argv) > 2 else []
spark = build_session("local[2]", java_options=extra)
if sys.argv[1] == "job":
    assert spark.range(100).selectExpr("sum(id)").collect()[0][0] == 4950
print("OPTIONS", spark.sparkContext.getConf().get("spark.driver.extraJavaOptions"), flush=True)
spark.stop()
"""


def environment(folder: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "SPARK_CDS"}
    env.update(SPARK_CDS_DIR=str(folder), SPARK_LOCAL_IP="127.0.0.1")
    return env


def session(env: dict[str, str], cwd: Path, job: bool, *extra: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", SESSION, "job" if job else "start", *extra],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("jvm")


@pytest.fixture(scope="module")
def archive(folder: Path) -> Path:
    result = subprocess.run(
        [sys.executable, "-m", "etl.jvmcache", "--quiet", "--timeout", "240"],
        env=environment(folder), cwd=folder, capture_output=True, text=True, timeout=300,
    )
    log = folder / "create.log"
    assert result.returncode == 0, (
        result.stderr + (log.read_text()[-3000:] if log.exists() else "")
    )
    archives = sorted(folder.glob("*.jsa"))
    assert len(archives) == 1, archives
    assert len(result.stdout.strip().splitlines()) == 1, result.stdout
    assert str(archives[0]) in result.stdout
    return archives[0]


def test_archive_is_complete_and_creating_again_is_a_no_op(archive: Path, folder: Path) -> None:
    size = archive.stat().st_size
    assert size > 50_000_000
    with archive.open("rb") as handle:
        assert int.from_bytes(handle.read(4), "little") == jvmcache.DYNAMIC_ARCHIVE_MAGIC
    key = jvmcache.current_key(POSTGRES_JDBC_PACKAGE, DRIVER_JAVA_OPTIONS, environment(folder))
    assert key is not None
    assert jvmcache.find_archive(folder, key) == archive
    assert not list(folder.glob(".*.tmp"))
    again = subprocess.run(
        [sys.executable, "-m", "etl.jvmcache"],
        env=environment(folder), cwd=folder, capture_output=True, text=True, timeout=60,
    )
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stdout
    assert archive.stat().st_size == size


def test_the_driver_jvm_maps_the_archive(archive: Path, folder: Path, tmp_path: Path) -> None:
    # -Xshare:on: a JVM that cannot map the archive refuses to start (the job would fail).
    classes = tmp_path / "classes.log"
    out = session(
        environment(folder), tmp_path, True, f"-Xshare:on -Xlog:class+load:file={classes}"
    )
    assert f"-XX:SharedArchiveFile={archive}" in out
    loaded = classes.read_text().splitlines()
    from_archive = [line for line in loaded if "source: shared objects file (top)" in line]
    # Most of Spark's classes come from the archive, not from its jars.
    assert len(from_archive) > 5000, len(from_archive)
    assert len(from_archive) > len(loaded) / 2


def test_a_garbage_archive_does_not_stop_a_session(tmp_path: Path) -> None:
    folder = tmp_path / "jvm"
    folder.mkdir()
    env = environment(folder)
    key = jvmcache.current_key(POSTGRES_JDBC_PACKAGE, DRIVER_JAVA_OPTIONS, env)
    assert key is not None
    garbage = b"not an archive!"
    path = folder / jvmcache.archive_name(key, len(garbage))
    path.write_bytes(garbage)
    out = session(env, tmp_path, False)  # build_session's options: -Xshare:auto, the default
    assert f"-XX:SharedArchiveFile={path}" in out
