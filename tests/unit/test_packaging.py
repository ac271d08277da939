"""requirements.txt is exported from uv.lock, never edited by hand: the two must agree."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def uv_binary() -> str | None:
    local = ROOT / ".local" / "bootstrap" / "bin" / "uv"
    return str(local) if local.exists() else shutil.which("uv")


def test_requirements_txt_matches_the_lock_file():
    uv = uv_binary()
    if uv is None:
        pytest.skip("uv is not installed (make install bootstraps it)")
    exported = subprocess.run(
        [uv, "export", "--frozen", "--no-default-groups", "--no-hashes", "--no-emit-project",
         "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def pins(text: str) -> list[str]:
        return [line for line in text.splitlines() if line and not line.lstrip().startswith("#")]

    current = (ROOT / "requirements.txt").read_text()
    assert pins(exported) == pins(current), "requirements.txt is stale: run `make requirements`"
