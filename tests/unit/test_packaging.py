"""requirements.txt is exported from uv.lock, never edited by hand: the two must agree."""

from __future__ import annotations

import subprocess

import pytest

from tests.plugins.deploy import REPO as ROOT
from tests.plugins.deploy import uv_binary


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
