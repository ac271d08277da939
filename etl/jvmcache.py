"""A JVM class-data archive (Java's dynamic AppCDS) that cuts ~5 s from a Spark driver's start.

Most of a local session's start is the JVM loading and verifying Spark's classes. A *dynamic
archive* holds those classes pre-parsed: one training run dumps them when its JVM exits
(`-XX:ArchiveClassesAtExit`), later JVMs map the file (`-XX:SharedArchiveFile`) instead of
loading the classes again. `etl.spark.build_session` adds the options when the archive for
this JDK and Spark exists; `python -m etl.jvmcache` (run by `make install` and the Dockerfile)
creates it.

The file name carries a key over everything the archive depends on (pyspark's version and
location, the `java` binary, its JDK's `lib/modules`, the JDBC package and the driver's JVM
options) and the file's size: another JDK or Spark never finds a stale archive, and a
truncated file is never handed to the JVM (it would crash on one instead of ignoring it). A
mismatching or damaged header is ignored by the JVM (`-Xshare:auto`, the default), damaged
contents are caught by `-XX:+VerifySharedSpaces` (about 0.1 s).

Environment: `SPARK_CDS=off` disables the feature; `SPARK_CDS_DIR` moves the archive's folder
(default: the project's `.local/jvm/`).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

DEFAULT_DIR = Path(".local") / "jvm"  # under the working directory, like LOCAL_PG_DIR
DIR_ENV = "SPARK_CDS_DIR"
SWITCH_ENV = "SPARK_CDS"
OFF_VALUES = frozenset({"off", "0", "false", "no"})
ARCHIVE_RE = re.compile(r"^spark-(?P<key>[0-9a-f]{16})-(?P<size>[0-9]+)\.jsa$")
DUMP_RE = re.compile(r"^\.spark-[0-9a-f]{16}\.[0-9]+\.jsa\.tmp$")  # a dump in progress
# Options for a JVM that maps the archive. `-Xshare:auto` is the default: an archive the JVM
# cannot use (other JDK, other class path, bad header) is skipped, and the log selector keeps
# that silent. A CRC check of the contents costs about 0.1 s and turns a damaged file into a
# skipped one instead of a JVM that fails to start.
MAP_OPTIONS = ("-Xlog:cds*=off", "-XX:+VerifySharedSpaces")
# The training JVM: only errors of the dump, no warning per class it cannot archive.
DUMP_LOG_OPTION = "-Xlog:cds*=error"
DYNAMIC_ARCHIVE_MAGIC = 0xF00BABA8  # JDK's CDS_DYNAMIC_ARCHIVE_MAGIC, little-endian on disk
MIN_ARCHIVE_BYTES = 1 << 20
RESULT_PREFIX = "JVMCACHE-RESULT "
TRAINING_MASTER = "local[2]"
TRAINING_DAY = date(2025, 1, 1)


class CreationError(RuntimeError):
    """The archive could not be created; nothing was left at the final path."""


# -- where and which archive (pure; no process is started) --------------------------------


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    """False when `SPARK_CDS` is off/0/false/no."""
    env = os.environ if environ is None else environ
    return env.get(SWITCH_ENV, "").strip().lower() not in OFF_VALUES


def archive_dir(environ: Mapping[str, str] | None = None) -> Path:
    """`SPARK_CDS_DIR` when set, else the project's `.local/jvm/`."""
    env = os.environ if environ is None else environ
    configured = env.get(DIR_ENV, "").strip()
    return Path(configured).expanduser() if configured else Path.cwd() / DEFAULT_DIR


def java_binary(environ: Mapping[str, str] | None = None) -> Path | None:
    """The `java` Spark's launcher runs: `$JAVA_HOME/bin/java`, else `java` on PATH (resolved)."""
    env = os.environ if environ is None else environ
    java_home = env.get("JAVA_HOME", "").strip()
    if java_home:
        candidate: str | None = str(Path(java_home) / "bin" / "java")
    else:
        candidate = shutil.which("java", path=env.get("PATH", os.defpath))
    if candidate is None or not os.path.exists(candidate):
        return None
    return Path(os.path.realpath(candidate))


@dataclass(frozen=True)
class KeyInputs:
    """What an archive depends on; any change gives another key (another file name)."""

    pyspark_version: str
    spark_home: str
    java: str
    modules_mtime_ns: int
    modules_size: int
    jdbc_package: str
    driver_options: str

    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def key_inputs(
    *,
    pyspark_version: str,
    spark_home: Path,
    java: Path,
    jdbc_package: str,
    driver_options: str,
) -> KeyInputs:
    """The key's inputs; the JDK's `lib/modules` (its class library) by mtime and size."""
    try:
        modules = (java.parent.parent / "lib" / "modules").stat()
        mtime_ns, size = modules.st_mtime_ns, modules.st_size
    except OSError:
        mtime_ns, size = -1, -1
    return KeyInputs(
        pyspark_version=pyspark_version,
        spark_home=os.path.realpath(spark_home),
        java=str(java),
        modules_mtime_ns=mtime_ns,
        modules_size=size,
        jdbc_package=jdbc_package,
        driver_options=driver_options,
    )


def current_key(
    jdbc_package: str, driver_options: str, environ: Mapping[str, str] | None = None
) -> str | None:
    """The key for this process's pyspark and java; None without a `java`."""
    import pyspark  # imported already wherever a session is built

    env = os.environ if environ is None else environ
    java = java_binary(env)
    if java is None:
        return None
    spark_home = env.get("SPARK_HOME", "").strip() or os.path.dirname(pyspark.__file__)
    return key_inputs(
        pyspark_version=pyspark.__version__,
        spark_home=Path(spark_home),
        java=java,
        jdbc_package=jdbc_package,
        driver_options=driver_options,
    ).key()


def archive_name(key: str, size: int) -> str:
    return f"spark-{key}-{size}.jsa"


def find_archive(directory: Path, key: str) -> Path | None:
    """The complete archive for `key` in `directory`: its size must be the one in its name."""
    try:
        names = os.listdir(directory)
    except OSError:
        return None
    for name in sorted(names):
        match = ARCHIVE_RE.match(name)
        if match is None or match["key"] != key:
            continue
        path = directory / name
        try:
            if path.stat().st_size == int(match["size"]):
                return path
        except OSError:
            continue
    return None


def map_options(archive: Path) -> list[str]:
    """JVM options that map `archive` (quoted for `spark.driver.extraJavaOptions`)."""
    return [shlex.quote(f"-XX:SharedArchiveFile={archive}"), *MAP_OPTIONS]


def session_options(
    jdbc_package: str, driver_options: str, environ: Mapping[str, str] | None = None
) -> tuple[list[str], str | None]:
    """(options to add to the driver's, a note to log when the archive is missing).

    Nothing, silently, when disabled or without a `java`; never raises (a faster start is
    not worth a failed batch)."""
    env = os.environ if environ is None else environ
    if not enabled(env):
        return [], None
    try:
        key = current_key(jdbc_package, driver_options, env)
        if key is None:
            return [], None
        archive = find_archive(archive_dir(env), key)
    except Exception as error:  # an optimisation must not stop the batch
        return [], f"JVM class-data archive not used: {type(error).__name__}: {error}"
    if archive is None:
        return [], (
            "no JVM class-data archive for this JDK and Spark yet: Spark would start faster "
            "after `python -m etl.jvmcache` (or `make install`)"
        )
    return map_options(archive), None


# -- creation --------------------------------------------------------------------------------


def _say(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, flush=True)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One creator per folder at a time (a second one waits, then finds the archive)."""
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _check_archive(path: Path) -> int:
    """The dumped file's size, after checking that it is a complete dynamic archive."""
    if not path.exists():
        raise CreationError("the JVM wrote no archive (see the log)")
    size = path.stat().st_size
    with path.open("rb") as handle:
        magic = int.from_bytes(handle.read(4), "little")
        os.fsync(handle.fileno())
    if magic != DYNAMIC_ARCHIVE_MAGIC:
        raise CreationError(f"{path.name} is not a dynamic CDS archive (magic {magic:#x})")
    if size < MIN_ARCHIVE_BYTES:
        raise CreationError(f"{path.name} is only {size} bytes")
    return size


def _train_in_child(dump: Path, scratch: Path, log: Path, timeout: float) -> None:
    """Run the training session in a child process (own process group) and wait until it and
    its JVM have exited: the JVM writes the archive while it exits."""
    env = dict(os.environ)
    env[SWITCH_ENV] = "off"  # the child passes its own driver options
    command = [sys.executable, "-m", "etl.jvmcache", "--train", str(dump)]
    with log.open("wb") as output:
        child = subprocess.Popen(
            command, cwd=scratch, env=env, stdin=subprocess.DEVNULL, stdout=output,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            code = child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(child.pid)
            child.wait()
            raise CreationError(f"the training run took more than {timeout:.0f} s") from None
        except BaseException:  # Ctrl-C: the child is in its own session, it must not live on
            _kill_group(child.pid)
            child.wait()
            raise
    # The JVM is in the child's process group; the child waited for it, but be certain no
    # process of the group (a JVM still writing the archive) is left before the file is used.
    deadline = time.monotonic() + 60
    while _group_alive(child.pid):
        if time.monotonic() > deadline:
            _kill_group(child.pid)
            raise CreationError("the training JVM did not exit within 60 s of its Python process")
        time.sleep(0.2)
    result = _read_result(log)
    if code != 0 or result is None:
        raise CreationError(f"the training run failed (exit code {code})")
    if result.get("jvm_exit") != 0:
        raise CreationError(f"the training JVM exited with code {result.get('jvm_exit')}")


def _read_result(log: Path) -> dict[str, Any] | None:
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith(RESULT_PREFIX):
            value = json.loads(line[len(RESULT_PREFIX):])
            return value if isinstance(value, dict) else None
    return None


def _remove_others(directory: Path, keep: Path) -> None:
    """Older archives and dumps left by a killed creator (only this module's own files)."""
    for path in directory.iterdir():
        ours = ARCHIVE_RE.match(path.name) or DUMP_RE.match(path.name)
        if ours and path != keep:
            with contextlib.suppress(OSError):
                path.unlink()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create(directory: Path, key: str, *, timeout: float = 600.0, force: bool = False) -> Path:
    """Dump the archive for `key` into `directory`: renamed into place only once complete,
    then older archives are removed (a JVM that maps one keeps its mapping)."""
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory):
        existing = find_archive(directory, key)
        if existing is not None and not force:
            return existing  # another creator finished it while this one waited
        dump = directory / f".spark-{key}.{os.getpid()}.jsa.tmp"
        log = directory / "create.log"
        try:
            with tempfile.TemporaryDirectory(prefix="jvmcache-") as scratch:
                _train_in_child(dump, Path(scratch), log, timeout)
            size = _check_archive(dump)
            final = directory / archive_name(key, size)
            os.replace(dump, final)
            _fsync_dir(directory)
        finally:
            with contextlib.suppress(FileNotFoundError):
                dump.unlink()
        _remove_others(directory, final)
        return final


# -- the training run (in the child process) -------------------------------------------------


def _workload(spark: Any) -> None:
    """The batch's Spark work on a small day, so that the classes it loads are archived: a
    partitioned JDBC read of the extract's columns (from an in-memory Derby database: Derby
    ships with Spark), `build_fact_trades`, collection as Arrow; and the PostgreSQL driver."""
    from pyspark.sql import functions as F

    from binance_etl.localpg import free_port
    from etl.extract import EXTRACT_COLUMNS, read_day
    from etl.transform import build_fact_trades
    from etl.utils import day_bounds

    day = TRAINING_DAY
    start, _ = day_bounds(day)
    start_us = int(start.timestamp()) * 1_000_000
    symbols = ["BTCUSDT", "ETHUSDT", "BNBBTC"]
    trades = spark.range(0, 6000, numPartitions=2).select(
        F.element_at(F.array(*[F.lit(s) for s in symbols]), (F.col("id") % 3 + 1).cast("int"))
        .alias("symbol"),
        (F.col("id") + F.lit(1_000_000)).alias("trade_id"),
        (F.lit(6_000_000_000_000) + F.col("id") * 137).alias("price_e8"),
        (F.lit(1_000_000) + F.col("id") % 977).alias("quantity_e8"),
        F.timestamp_micros(F.lit(start_us) + F.col("id") * 14_000_000).alias("trade_time"),
        (F.col("id") % 2 == 0).alias("is_buyer_maker"),
    )
    derby = "jdbc:derby:memory:jvmcache;create=true"
    trades.write.jdbc(derby, "TRADES", mode="overwrite")
    # Two time ranges, one JDBC partition each, as the extract cuts the day.
    edges = [f"{day} 00:00:00", f"{day} 12:00:00", f"{day + timedelta(days=1)} 00:00:00"]
    predicates = [
        f"\"trade_time\" >= TIMESTAMP('{low}') AND \"trade_time\" < TIMESTAMP('{high}')"
        for low, high in zip(edges, edges[1:], strict=False)
    ]
    extracted = spark.read.jdbc(
        derby, "TRADES", predicates=predicates, properties={"fetchsize": "1000"}
    ).select(*EXTRACT_COLUMNS)
    facts = build_fact_trades(extracted, day)
    if facts.toArrow().num_rows == 0:
        raise RuntimeError("the training day produced no facts")
    facts.collect()
    # The PostgreSQL driver and its JDBC options: a closed port, refused at once.
    with contextlib.suppress(Exception):
        read_day(spark, f"postgresql://etl@127.0.0.1:{free_port()}/trades", day).count()


def _train(dump: Path) -> int:
    """Child: a session as `build_session` makes it, plus the dump option; the workload; then
    stop, close the JVM's stdin (its signal to exit) and wait for it to exit."""
    from pyspark import SparkContext

    from etl.spark import DRIVER_JAVA_OPTIONS, build_session

    options = " ".join(
        [DRIVER_JAVA_OPTIONS, shlex.quote(f"-XX:ArchiveClassesAtExit={dump}"), DUMP_LOG_OPTION]
    )
    spark = build_session(
        TRAINING_MASTER, extra_conf={"spark.driver.extraJavaOptions": options}
    )
    jvm = getattr(SparkContext._gateway, "proc", None)
    if jvm is None:
        print("the session's JVM is not a child of this process", file=sys.stderr)
        return 1
    _workload(spark)
    spark.stop()
    if jvm.stdin is not None:
        jvm.stdin.close()
    jvm_exit = jvm.wait()
    print(RESULT_PREFIX + json.dumps({"jvm_pid": jvm.pid, "jvm_exit": jvm_exit}), flush=True)
    return 0


# -- command line ----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m etl.jvmcache",
        description="Create the JVM class-data archive that makes the Spark driver start faster "
        f"(folder: ${DIR_ENV} or .local/jvm/; ${SWITCH_ENV}=off disables it).",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if it exists")
    parser.add_argument("--quiet", action="store_true", help="print only the result or error")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument("--train", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.train is not None:
        return _train(args.train)

    from etl.spark import DRIVER_JAVA_OPTIONS, POSTGRES_JDBC_PACKAGE

    if not enabled():
        _say(f"JVM class-data archive disabled ({SWITCH_ENV}={os.environ[SWITCH_ENV]})", args.quiet)
        return 0
    key = current_key(POSTGRES_JDBC_PACKAGE, DRIVER_JAVA_OPTIONS)
    if key is None:
        print("etl.jvmcache: error: no java found (JAVA_HOME or PATH)", file=sys.stderr)
        return 1
    directory = archive_dir()
    existing = find_archive(directory, key)
    if existing is not None and not args.force:
        _say(f"JVM class-data archive is up to date: {existing}", args.quiet)
        return 0
    _say(f"creating the JVM class-data archive in {directory} (about a minute)", args.quiet)
    started = time.perf_counter()
    try:
        path = create(directory, key, timeout=args.timeout, force=args.force)
    except (CreationError, OSError) as error:
        log = directory / "create.log"
        print(f"etl.jvmcache: error: {error}; log: {log}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("etl.jvmcache: interrupted; no archive written", file=sys.stderr)
        return 130
    seconds = time.perf_counter() - started
    size_mb = path.stat().st_size / 1e6
    print(f"JVM class-data archive: {path} ({size_mb:.0f} MB, {seconds:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
