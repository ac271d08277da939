"""The local stack's files, checked statically (no Docker engine here): docker-compose.yaml
against the Compose specification's JSON schema, its variables against `.env.example`, the
commands and paths it and the Dockerfile name against the repository, `airflow.cfg`'s keys
against Airflow's own configuration reference."""

from __future__ import annotations

import configparser
import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from binance_etl.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE = REPO / "Dockerfile"
AIRFLOW_CFG = REPO / "airflow.cfg"
IMAGE_ROOT = "/opt/binance-etl"  # where the Dockerfile puts the repository

# ${NAME}, ${NAME:-default}, ${NAME:?error}, ${NAME-x}, ${NAME+x}; `$${...}` is an escaped `$`.
_VARIABLE_RE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:[:?+-][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def env_example_names() -> set[str]:
    """Variables `.env.example` names, set (`NAME=value`) or documented unset (`# NAME=`)."""
    names = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=", line)
        if match:
            names.add(match.group(1))
    return names


def test_compose_file_matches_the_compose_specification():
    checker = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    assert checker, "check-jsonschema (a dev dependency) is not installed"
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_a_broken_compose_file(tmp_path: Path):
    """The check above can fail: a misspelt service key is refused."""
    broken = tmp_path / "docker-compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("healthcheck:", "healthchek:", 1))
    checker = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    assert checker
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(broken)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode != 0


def test_every_compose_variable_is_in_env_example():
    used = set(_VARIABLE_RE.findall(COMPOSE.read_text()))
    assert used, "the compose file interpolates no variable?"
    assert used - env_example_names() == set()


def test_every_setting_is_in_env_example():
    fields = {name.upper() for name in Settings.model_fields}
    assert fields - env_example_names() == set()


def test_env_example_holds_no_real_secret():
    for line in ENV_EXAMPLE.read_text().splitlines():
        name, _, value = line.partition("=")
        if re.search(r"PASSWORD|SECRET|FERNET|_KEY$", name) and not name.startswith("#"):
            assert value == "" or value.startswith("change-me"), line


def test_env_example_loads_as_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Copied to `.env` as the docs say, it is a valid configuration."""
    from binance_etl.settings import load_settings

    (tmp_path / ".env").write_text(ENV_EXAMPLE.read_text())
    monkeypatch.chdir(tmp_path)
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    settings = load_settings()
    assert settings.symbols == ["BTCUSDT", "ETHUSDT"]
    assert settings.airflow_wait_for_raw_day is True


def _module_exists(module: str) -> bool:
    path = REPO.joinpath(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__main__.py").exists()


@pytest.fixture(scope="module")
def airflow_commands(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Airflow's CLI command names (importing airflow with a throw-away AIRFLOW_HOME)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow-cli")))
        patch.setenv("AIRFLOW_CONFIG", str(AIRFLOW_CFG))
        patch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        from airflow.cli.cli_config import core_commands as commands

        return {command.name for command in commands}


def test_compose_commands_and_paths_exist(compose: dict[str, Any], airflow_commands: set[str]):
    services = compose["services"]
    assert {"postgres", "minio", "minio-init", "airflow-api-server", "airflow-scheduler",
            "airflow-dag-processor", "airflow-triggerer", "streamer"} <= set(services)
    for name, service in services.items():
        build = service.get("build")
        if build:
            assert (REPO / build["context"] / build.get("dockerfile", "Dockerfile")).is_file()
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name}: {source}"
        command = service.get("command")
        image = service.get("image", "")
        if not isinstance(command, list) or image.startswith(("minio", "postgres")):
            continue
        if command[0] == "airflow":
            assert command[1] in airflow_commands, f"{name}: airflow {command[1]}"
        elif command[0] == "python" and command[1] == "-m":
            assert _module_exists(command[2]), f"{name}: {command[2]}"
        elif command[0] == "python":
            assert (REPO / command[1]).is_file(), f"{name}: {command[1]}"
        elif command[0] == "spark-class":
            assert (Path(sys.executable).parent / "spark-class").exists()
        else:
            pytest.fail(f"{name}: unchecked command {command}")


def test_compose_services_have_health_checks_and_named_volumes(compose: dict[str, Any]):
    long_running = [name for name, service in compose["services"].items()
                    if service.get("restart") != "no" and "profiles" not in service]
    for name in long_running:
        assert "healthcheck" in compose["services"][name], name
    declared = set(compose["volumes"])
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared


def test_dockerfile_copies_existing_paths_and_installs_java_17():
    text = DOCKERFILE.read_text()
    base = re.search(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert base is not None
    assert base.group(1).startswith(("python:3.11", "apache/airflow:"))
    assert "openjdk-17" in text
    assert "requirements.txt" in text
    for line in re.findall(r"^COPY\s+(?!--from)(.+)$", text, re.MULTILINE):
        *sources, _target = line.split()
        for source in sources:
            assert (REPO / source).exists(), source
    ignored = (REPO / ".dockerignore").read_text().split()
    for needed in ("requirements.txt", "dags", *_wheel_packages(), "stream.py", "airflow.cfg"):
        assert needed not in ignored


def _wheel_packages() -> list[str]:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    return list(pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])


def _copies(text: str) -> list[tuple[str, str]]:
    """(source, target) of every plain COPY line, in order."""
    pairs: list[tuple[str, str]] = []
    for line in re.findall(r"^COPY\s+(?!--from)(.+)$", text, re.MULTILINE):
        *sources, target = line.split()
        pairs.extend((source, target) for source in sources)
    return pairs


def test_dockerfile_installs_the_project_as_a_package_not_from_the_working_directory():
    """The image installs the wheel's packages (every one pyproject lists) from a build copy
    that is removed again: the working directory of the services (WORKDIR, where `python
    stream.py` and Airflow run) holds no package source that could shadow the installed one."""
    text = DOCKERFILE.read_text()
    install = re.search(r"^RUN pip install --no-deps (\S+) && rm -rf (\S+)$", text, re.MULTILINE)
    assert install is not None, "the project is installed with `pip install --no-deps <src>`"
    source_dir = install.group(1).rstrip("/")
    assert install.group(2).rstrip("/") == source_dir
    before = _copies(text[: install.start()])
    copied = {Path(src).name if tgt.endswith("/") else Path(tgt).name: tgt
              for src, tgt in before}
    for needed in (*_wheel_packages(), "pyproject.toml", "README.md"):
        assert needed in copied, f"{needed} is not copied before the install"
        assert copied[needed].startswith(source_dir), f"{needed} goes to {copied[needed]}"
    workdir = re.findall(r"^WORKDIR\s+(\S+)$", text, re.MULTILINE)[-1]
    assert not source_dir.startswith(workdir)
    for source, target in _copies(text):
        into_workdir = not target.startswith("/") or target.startswith(workdir)
        if into_workdir:
            assert source not in _wheel_packages(), f"{source} copied into {workdir}"
    assert re.search(r"^RUN pip install -r requirements\.txt$", text, re.MULTILINE)


def test_airflow_cfg_keys_are_airflows_own():
    spec = importlib.util.find_spec("airflow")  # the file only: no Airflow import needed
    assert spec is not None
    assert spec.origin is not None
    reference = yaml.safe_load(
        Path(spec.origin).with_name("config_templates").joinpath("config.yml").read_text()
    )
    parser = configparser.ConfigParser()
    parser.read(AIRFLOW_CFG)
    for section in parser.sections():
        assert section in reference, section
        for key in parser[section]:
            assert key in reference[section]["options"], f"[{section}] {key}"
    assert parser["core"]["dags_folder"] == f"{IMAGE_ROOT}/dags"
    assert parser["core"]["load_examples"] == "False"
    assert parser["core"]["default_timezone"] == "utc"
    assert parser["core"]["executor"] == "LocalExecutor"
    assert int(parser["core"]["parallelism"]) <= 8  # 2 cores
