"""The project's own PostgreSQL: start, reuse, TCP on 127.0.0.1, restart, stop — as root too."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from binance_etl.db import connect
from binance_etl.localpg import LocalPostgres, reachable_by_others

pytestmark = pytest.mark.integration


@pytest.fixture
def private_home(tmp_path: Path):
    """A server folder under a 0700 directory, like a checkout in root's home."""
    parent = tmp_path / "private"
    parent.mkdir(mode=0o700)
    parent.chmod(0o700)
    server = LocalPostgres(parent / "pg")
    yield server
    server.stop(mode="immediate")
    base = server.layout().base
    if base.is_relative_to(Path("/var/lib/binance-etl")):  # relocated under root: not in tmp
        shutil.rmtree(base, ignore_errors=True)


def test_start_reuse_restart_stop(private_home: LocalPostgres):
    url = private_home.ensure_running()
    assert url.startswith("postgresql://postgres@127.0.0.1:")
    assert private_home.ensure_running() == url  # reused, same port
    with connect(url) as conn:
        row = conn.execute("SHOW listen_addresses").fetchone()
        assert row == ("127.0.0.1",)
        assert conn.execute("SHOW timezone").fetchone() == ("UTC",)
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (42)")
        conn.commit()
    assert private_home.restart() == url
    with connect(url) as conn:
        assert conn.execute("SELECT x FROM kept").fetchone() == (42,)
    assert private_home.stop() is True
    assert private_home.status() is None
    assert private_home.stop() is False
    assert private_home.ensure_running() != ""  # starts again on the same data
    with connect(private_home.status() or "") as conn:
        assert conn.execute("SELECT x FROM kept").fetchone() == (42,)


@pytest.mark.skipif(os.geteuid() != 0, reason="the root path only applies when running as root")
def test_root_runs_server_as_unprivileged_user(private_home: LocalPostgres):
    private_home.ensure_running()
    layout = private_home.layout()
    assert not reachable_by_others(private_home.home.parent)
    # data moved where the service user can reach it; the binaries it runs are reachable too
    assert reachable_by_others(layout.pgdata.parent)
    assert reachable_by_others(layout.bindir)
    pid = int((layout.pgdata / "postmaster.pid").read_text().splitlines()[0])
    assert Path(f"/proc/{pid}").stat().st_uid != 0
    assert stat.S_IMODE(layout.pgdata.stat().st_mode) == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="the root path only applies when running as root")
def test_root_copies_binaries_out_of_an_unreachable_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A virtual environment under a 0700 home: the server user cannot run its binaries there."""
    import binance_etl.localpg as localpg

    real = localpg._pginstall()
    private = tmp_path / "home"  # tmp_path's parents are 0700 under root
    private.mkdir(mode=0o700)
    site = private / "site-packages"
    shutil.copytree(real, site / real.parent.name / real.name, symlinks=True)
    libs = real.parent.with_name(real.parent.name + ".libs")
    if libs.exists():
        shutil.copytree(libs, site / libs.name, symlinks=True)
    monkeypatch.setattr(localpg, "_pginstall", lambda: site / real.parent.name / real.name)
    server = LocalPostgres(private / "pg")
    try:
        url = server.ensure_running()
        layout = server.layout()
        assert not layout.bindir.is_relative_to(private)
        assert reachable_by_others(layout.bindir)
        with connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(server.layout().base, ignore_errors=True)
