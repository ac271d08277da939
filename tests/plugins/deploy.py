"""Pytest fixtures for the deploy area (registered in tests/conftest.py).

`deployed`: the project as a user deploys it — the wheel built from this checkout, installed
with the pinned dependencies (`requirements.txt`, exported from uv.lock, as constraints) into a
fresh virtual environment outside the repository, and an Airflow home whose dags folder holds a
copy of `dags/etl_dags.py` only. Commands run there from a directory that is not the
repository, with no PYTHONPATH and the repository's `.venv/bin` off PATH.

`uv_binary()`: the bootstrap uv of `make install` (or one on PATH).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Variables that would let the fresh environment see the repository or the project's .venv.
_LEAKS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")


def uv_binary() -> str | None:
    local = REPO / ".local" / "bootstrap" / "bin" / "uv"
    return str(local) if local.exists() else shutil.which("uv")


def run_uv(uv: str, args: Sequence[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], str]:
    """`uv ARGS` from uv's cache alone (`--offline`: what `make install` already fetched), and
    with the network only when the cache lacks something; returns the result and the mode."""
    env = {k: v for k, v in os.environ.items() if k not in _LEAKS}
    env["UV_PYTHON_DOWNLOADS"] = "never"
    for mode in ("offline", "online"):
        extra = ["--offline"] if mode == "offline" else []
        result = subprocess.run([uv, *args, *extra], cwd=cwd, env=env, capture_output=True,
                                text=True, timeout=600, check=False)
        if result.returncode == 0:
            return result, mode
    raise AssertionError(f"uv {' '.join(args)} failed:\n{result.stdout}{result.stderr}")


@dataclass
class Deployed:
    """A fresh virtual environment with the wheel installed, and where to run things in it."""

    venv: Path
    wheel: Path
    workdir: Path  # not the repository: the working directory of every command
    dags: Path
    airflow_home: Path
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The process environment: the fresh venv first on PATH, nothing of the repository."""
        env = {k: v for k, v in os.environ.items()
               if k not in _LEAKS and not k.startswith("AIRFLOW")}
        path = [p for p in os.environ.get("PATH", os.defpath).split(os.pathsep)
                if p and not Path(p).resolve().is_relative_to(REPO)]
        env["PATH"] = os.pathsep.join([str(self.bin), *path])
        env.update(extra or {})
        return env

    def run(self, argv: Sequence[str], env: Mapping[str, str], timeout: float = 300
            ) -> subprocess.CompletedProcess[str]:
        """Run a command of the venv (`airflow`, `python`, ...) in `workdir`; output captured."""
        executable = self.bin / argv[0]
        assert executable.exists(), f"{argv[0]} is not installed in {self.venv}"
        return subprocess.run([str(executable), *argv[1:]], cwd=self.workdir, env=dict(env),
                              capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    uv = uv_binary()
    if uv is None:
        pytest.fail("uv is not installed (make install bootstraps it)")
    root = tmp_path_factory.mktemp("deploy")
    timings: dict[str, float] = {}

    started = time.monotonic()
    _, mode = run_uv(uv, ["build", "--wheel", "--out-dir", str(root / "dist"), "--quiet"], REPO)
    timings[f"wheel build ({mode})"] = time.monotonic() - started
    wheels = list((root / "dist").glob("*.whl"))
    assert len(wheels) == 1, wheels

    venv = root / "venv"
    started = time.monotonic()
    run_uv(uv, ["venv", "--quiet", "--python", "3.11", str(venv)], root)
    # requirements.txt pins every dependency (exported from uv.lock): as constraints, the
    # wheel's own dependency ranges resolve to exactly the tested versions.
    _, mode = run_uv(uv, ["pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
                          "--constraints", str(REPO / "requirements.txt"), str(wheels[0])], root)
    timings[f"fresh venv + install ({mode})"] = time.monotonic() - started

    dags = root / "dags"
    dags.mkdir()
    shutil.copy2(REPO / "dags" / "etl_dags.py", dags / "etl_dags.py")
    workdir = root / "work"
    workdir.mkdir()
    home = root / "airflow-home"
    home.mkdir()
    return Deployed(venv, wheels[0], workdir, dags, home, timings)
