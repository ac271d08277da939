"""The JVM class-data archive's key, location, options and creation steps (no JVM here)."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import etl.spark
from etl import jvmcache
from etl.jvmcache import KeyInputs, archive_name, find_archive, key_inputs
from etl.spark import DRIVER_JAVA_OPTIONS, POSTGRES_JDBC_PACKAGE

ROOT = Path(__file__).resolve().parents[2]


def fake_jdk(root: Path, modules: bytes = b"modules") -> Path:
    """A JDK layout: bin/java (an executable script) and lib/modules."""
    (root / "bin").mkdir(parents=True)
    (root / "lib").mkdir()
    java = root / "bin" / "java"
    java.write_text("#!/bin/sh\nexit 0\n")
    java.chmod(0o755)
    (root / "lib" / "modules").write_bytes(modules)
    return java


def inputs(java: Path, **overrides: Any) -> KeyInputs:
    values: dict[str, Any] = {
        "pyspark_version": "4.3.0",
        "spark_home": Path("/opt/spark"),
        "java": java,
        "jdbc_package": POSTGRES_JDBC_PACKAGE,
        "driver_options": DRIVER_JAVA_OPTIONS,
    }
    values.update(overrides)
    return key_inputs(**values)


@pytest.fixture
def jdk(tmp_path: Path) -> Path:
    return fake_jdk(tmp_path / "jdk")


@pytest.fixture
def env(tmp_path: Path, jdk: Path) -> dict[str, str]:
    """An environment with the fake JDK and an archive folder of its own."""
    return {
        "JAVA_HOME": str(jdk.parent.parent),
        "PATH": "/usr/bin:/bin",
        "SPARK_CDS_DIR": str(tmp_path / "cds"),
    }


# -- key -------------------------------------------------------------------------------------


def test_key_is_stable_for_the_same_inputs(jdk: Path) -> None:
    key = inputs(jdk).key()
    assert key == inputs(jdk).key()
    assert len(key) == 16
    assert int(key, 16) >= 0


@pytest.mark.parametrize(
    "change",
    [
        {"pyspark_version": "4.3.1"},
        {"spark_home": Path("/elsewhere/pyspark")},
        {"jdbc_package": "org.postgresql:postgresql:42.7.9"},
        {"driver_options": "-XX:+UseG1GC"},
    ],
)
def test_key_changes_with_each_input(jdk: Path, change: dict[str, Any]) -> None:
    assert inputs(jdk, **change).key() != inputs(jdk).key()


def test_key_changes_with_the_java_binary(tmp_path: Path, jdk: Path) -> None:
    other = fake_jdk(tmp_path / "other-jdk")
    assert inputs(other).key() != inputs(jdk).key()


def test_key_changes_when_the_jdk_class_library_changes(jdk: Path) -> None:
    modules = jdk.parent.parent / "lib" / "modules"
    before = inputs(jdk).key()
    stat = modules.stat()
    os.utime(modules, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    after_mtime = inputs(jdk).key()
    assert after_mtime != before
    modules.write_bytes(b"a longer class library")
    os.utime(modules, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert inputs(jdk).key() not in (before, after_mtime)  # same mtime, other size


def test_key_without_modules_file_is_still_defined(tmp_path: Path) -> None:
    java = fake_jdk(tmp_path / "jdk")
    (tmp_path / "jdk" / "lib" / "modules").unlink()
    assert inputs(java).modules_size == -1
    assert inputs(java).key() == inputs(java).key()


def test_current_key_follows_java_home_and_spawns_no_process(
    env: dict[str, str], jdk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_process(*args: object, **kwargs: object) -> None:
        raise AssertionError("computing the key started a process")

    monkeypatch.setattr(subprocess.Popen, "__init__", no_process)
    monkeypatch.setattr(os, "system", no_process)
    key = jvmcache.current_key(POSTGRES_JDBC_PACKAGE, DRIVER_JAVA_OPTIONS, env)
    assert key is not None
    assert key == jvmcache.current_key(POSTGRES_JDBC_PACKAGE, DRIVER_JAVA_OPTIONS, env)
    assert key != jvmcache.current_key(POSTGRES_JDBC_PACKAGE, "-Xss2m", env)
    modules = jdk.parent.parent / "lib" / "modules"
    os.utime(modules, ns=(0, modules.stat().st_mtime_ns + 10**9))
    assert key != jvmcache.current_key(POSTGRES_JDBC_PACKAGE, DRIVER_JAVA_OPTIONS, env)


def test_current_key_follows_spark_home(env: dict[str, str], tmp_path: Path) -> None:
    key = jvmcache.current_key(POSTGRES_JDBC_PACKAGE, DRIVER_JAVA_OPTIONS, env)
    moved = {**env, "SPARK_HOME": str(tmp_path)}
    assert jvmcache.current_key(POSTGRES_JDBC_PACKAGE, DRIVER_JAVA_OPTIONS, moved) != key


# -- java and folder -------------------------------------------------------------------------


def test_java_from_java_home_is_resolved(tmp_path: Path, jdk: Path) -> None:
    link = tmp_path / "java-home"
    link.symlink_to(jdk.parent.parent)
    assert jvmcache.java_binary({"JAVA_HOME": str(link)}) == jdk.resolve()


def test_java_from_path_is_resolved(tmp_path: Path, jdk: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "java").symlink_to(jdk)
    assert jvmcache.java_binary({"PATH": str(bin_dir)}) == jdk.resolve()


def test_no_java(tmp_path: Path) -> None:
    assert jvmcache.java_binary({"PATH": str(tmp_path)}) is None
    assert jvmcache.java_binary({"JAVA_HOME": str(tmp_path / "nothing")}) is None
    assert jvmcache.current_key("x", "y", {"PATH": str(tmp_path)}) is None


def test_default_folder_is_local_jvm_under_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert jvmcache.archive_dir({}) == tmp_path / ".local" / "jvm"
    assert jvmcache.archive_dir({"SPARK_CDS_DIR": "  "}) == tmp_path / ".local" / "jvm"


def test_folder_from_the_environment(tmp_path: Path) -> None:
    assert jvmcache.archive_dir({"SPARK_CDS_DIR": str(tmp_path)}) == tmp_path
    home = Path("~").expanduser()
    assert jvmcache.archive_dir({"SPARK_CDS_DIR": "~/cds"}) == home / "cds"


@pytest.mark.parametrize("value", ["off", "OFF", " off ", "0", "false", "no"])
def test_disabled(value: str) -> None:
    assert not jvmcache.enabled({"SPARK_CDS": value})


@pytest.mark.parametrize("value", ["", "on", "1", "auto"])
def test_enabled(value: str) -> None:
    assert jvmcache.enabled({"SPARK_CDS": value})
    assert jvmcache.enabled({})


# -- finding the archive and the options -----------------------------------------------------


def test_find_archive_wants_the_key_and_the_complete_size(tmp_path: Path) -> None:
    key, other = "0123456789abcdef", "fedcba9876543210"
    assert find_archive(tmp_path / "missing", key) is None
    (tmp_path / archive_name(other, 3)).write_bytes(b"abc")
    (tmp_path / f".spark-{key}.1.jsa.tmp").write_bytes(b"abc")
    assert find_archive(tmp_path, key) is None
    truncated = tmp_path / archive_name(key, 10)
    truncated.write_bytes(b"abc")  # a JVM would crash on a truncated archive: never used
    assert find_archive(tmp_path, key) is None
    complete = tmp_path / archive_name(key, 3)
    complete.write_bytes(b"abc")
    assert find_archive(tmp_path, key) == complete


def put_archive(env: dict[str, str], content: bytes = b"archive") -> Path:
    key = jvmcache.current_key(POSTGRES_JDBC_PACKAGE, DRIVER_JAVA_OPTIONS, env)
    assert key is not None
    folder = Path(env["SPARK_CDS_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / archive_name(key, len(content))
    path.write_bytes(content)
    return path


def test_options_when_the_archive_exists(env: dict[str, str]) -> None:
    path = put_archive(env)
    options, note = jvmcache.session_options(POSTGRES_JDBC_PACKAGE, DRIVER_JAVA_OPTIONS, env)
    assert options == [f"-XX:SharedArchiveFile={path}", "-Xlog:cds*=off", "-XX:+VerifySharedSpaces"]
    assert note is None


def test_no_options_but_a_note_when_the_archive_is_missing(env: dict[str, str]) -> None:
    options, note = jvmcache.session_options(POSTGRES_JDBC_PACKAGE, DRIVER_JAVA_OPTIONS, env)
    assert options == []
    assert note is not None
    assert "python -m etl.jvmcache" in note


def test_nothing_when_disabled_even_with_an_archive(env: dict[str, str]) -> None:
    put_archive(env)
    off = {**env, "SPARK_CDS": "off"}
    assert jvmcache.session_options(POSTGRES_JDBC_PACKAGE, DRIVER_JAVA_OPTIONS, off) == ([], None)


def test_nothing_without_java(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path), "SPARK_CDS_DIR": str(tmp_path)}
    assert jvmcache.session_options("x", "y", env) == ([], None)


def test_an_unexpected_error_never_escapes(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise PermissionError("denied")

    monkeypatch.setattr(jvmcache, "find_archive", broken)
    options, note = jvmcache.session_options(POSTGRES_JDBC_PACKAGE, DRIVER_JAVA_OPTIONS, env)
    assert options == []
    assert note is not None
    assert "denied" in note


def test_a_path_with_a_space_is_quoted_for_spark(tmp_path: Path) -> None:
    option = jvmcache.map_options(tmp_path / "a b" / "x.jsa")[0]
    assert option == f"'-XX:SharedArchiveFile={tmp_path}/a b/x.jsa'"


# -- build_session (a fake builder: no JVM) --------------------------------------------------


class FakeBuilder:
    def __init__(self) -> None:
        self.conf: dict[str, str] = {}

    def appName(self, name: str) -> FakeBuilder:
        return self

    def master(self, master: str) -> FakeBuilder:
        self.conf["spark.master"] = master
        return self

    def config(self, key: str, value: str) -> FakeBuilder:
        self.conf[key] = value
        return self

    def getOrCreate(self) -> Any:
        class Context:
            master = "local[2]"

            def setLogLevel(self, level: str) -> None:
                pass

        class Session:
            sparkContext = Context()
            version = "fake"

        return Session()


@pytest.fixture
def builder(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> FakeBuilder:
    fake = FakeBuilder()
    monkeypatch.setattr(etl.spark.SparkSession, "builder", fake)
    monkeypatch.setattr(etl.spark.SparkSession, "getActiveSession", staticmethod(lambda: None))
    monkeypatch.setattr(etl.spark, "configure", lambda session: session)
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    monkeypatch.delenv("SPARK_CDS", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return fake


def test_build_session_maps_the_archive(builder: FakeBuilder, env: dict[str, str]) -> None:
    path = put_archive(env)
    etl.spark.build_session("local[2]")
    options = builder.conf["spark.driver.extraJavaOptions"]
    assert options.startswith(DRIVER_JAVA_OPTIONS + " ")
    assert f"-XX:SharedArchiveFile={path}" in options
    assert "-Xlog:cds*=off" in options


def test_build_session_says_how_to_start_faster(
    builder: FakeBuilder, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="etl.spark"):
        etl.spark.build_session("local[2]")
    assert builder.conf["spark.driver.extraJavaOptions"] == DRIVER_JAVA_OPTIONS
    notes = [r.getMessage() for r in caplog.records if "etl.jvmcache" in r.getMessage()]
    assert len(notes) == 1
    assert "make install" in notes[0]


def test_build_session_under_spark_submit_leaves_the_jvm_alone(
    builder: FakeBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def not_called(*args: object) -> None:
        raise AssertionError("looked for an archive under spark-submit")

    monkeypatch.setattr(jvmcache, "session_options", not_called)
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "1")
    etl.spark.build_session("local[2]")
    assert "spark.driver.extraJavaOptions" not in builder.conf


def test_build_session_reusing_an_active_session_looks_for_nothing(
    builder: FakeBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    active = object()

    def not_called(*args: object) -> None:
        raise AssertionError("looked for an archive for a reused session")

    monkeypatch.setattr(jvmcache, "session_options", not_called)
    monkeypatch.setattr(etl.spark.SparkSession, "getActiveSession", staticmethod(lambda: active))
    assert etl.spark.build_session("local[2]") is active
    assert builder.conf == {}


# -- creation without a JVM: the training child is replaced ----------------------------------


def fake_dump(
    size: int = jvmcache.MIN_ARCHIVE_BYTES, magic: int = jvmcache.DYNAMIC_ARCHIVE_MAGIC
) -> Callable[[Path, Path, Path, float], None]:
    def train(dump: Path, scratch: Path, log: Path, timeout: float) -> None:
        log.write_text("training\n")
        dump.write_bytes(magic.to_bytes(4, "little") + b"\0" * (size - 4))

    return train


def test_create_renames_a_complete_archive_and_removes_older_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tmp_path / archive_name("0" * 16, 5)
    old.write_bytes(b"12345")
    (tmp_path / ".spark-1111111111111111.99.jsa.tmp").write_bytes(b"left by a crash")
    (tmp_path / "someone-elses.jsa").write_bytes(b"not ours")
    monkeypatch.setattr(jvmcache, "_train_in_child", fake_dump())
    path = jvmcache.create(tmp_path, "a" * 16)
    assert path == tmp_path / archive_name("a" * 16, jvmcache.MIN_ARCHIVE_BYTES)
    assert find_archive(tmp_path, "a" * 16) == path
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith((".jsa", ".tmp"))) == [
        "someone-elses.jsa", path.name
    ]


@pytest.mark.parametrize(
    "train",
    [
        fake_dump(size=100),  # too small to be an archive
        fake_dump(magic=0xF00BABA2),  # a static archive, not a dynamic one
        lambda dump, scratch, log, timeout: None,  # nothing written
    ],
)
def test_create_leaves_nothing_at_the_final_path_when_the_dump_is_bad(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, train: Any
) -> None:
    monkeypatch.setattr(jvmcache, "_train_in_child", train)
    with pytest.raises(jvmcache.CreationError):
        jvmcache.create(tmp_path, "b" * 16)
    assert [p.name for p in tmp_path.iterdir() if "jsa" in p.name] == []


def test_create_removes_the_partial_dump_when_training_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fails(dump: Path, scratch: Path, log: Path, timeout: float) -> None:
        dump.write_bytes(b"partial")
        raise jvmcache.CreationError("the training run failed (exit code 1)")

    monkeypatch.setattr(jvmcache, "_train_in_child", fails)
    with pytest.raises(jvmcache.CreationError):
        jvmcache.create(tmp_path, "c" * 16)
    assert [p.name for p in tmp_path.iterdir() if "jsa" in p.name] == []


# -- command line ----------------------------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> dict[str, str]:
    monkeypatch.delenv("SPARK_CDS", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def test_cli_disabled(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SPARK_CDS", "off")
    assert jvmcache.main([]) == 0
    assert "disabled" in capsys.readouterr().out
    assert jvmcache.main(["--quiet"]) == 0
    assert capsys.readouterr().out == ""


def test_cli_is_a_no_op_when_the_archive_exists(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = put_archive(cli_env)

    def not_called(*args: object, **kwargs: object) -> None:
        raise AssertionError("created again")

    monkeypatch.setattr(jvmcache, "create", not_called)
    assert jvmcache.main([]) == 0
    assert str(path) in capsys.readouterr().out
    assert jvmcache.main(["--quiet"]) == 0
    assert capsys.readouterr().out == ""


def test_cli_force_rebuilds(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old = put_archive(cli_env)
    monkeypatch.setattr(jvmcache, "_train_in_child", fake_dump())
    assert jvmcache.main(["--force", "--quiet"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    assert out[0].startswith("JVM class-data archive: ")
    assert "MB" in out[0]
    assert not old.exists()


def test_cli_failure_is_one_line_and_exit_code_1(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(jvmcache, "_train_in_child", lambda *args: None)
    assert jvmcache.main(["--quiet"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("etl.jvmcache: error: ")
    assert list(Path(cli_env["SPARK_CDS_DIR"]).glob("*.jsa")) == []
