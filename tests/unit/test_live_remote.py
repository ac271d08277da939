"""The live query's Spark Connect supervision without a server: its session per checkpoint, its
one-line reasons, and the bounded patience with a server that never answers."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

import pytest

from binance_etl.localpg import free_port
from binance_etl.settings import load_settings
from live.remote import first_line, run_remote, session_remote


def test_the_session_id_is_the_checkpoint_s_and_a_given_one_wins() -> None:
    one = session_remote("sc://127.0.0.1:15002", "/data/checkpoint")
    assert one == session_remote("sc://127.0.0.1:15002/", "/data/checkpoint")
    assert one != session_remote("sc://127.0.0.1:15002", "/data/other")
    session_id = one.split(";session_id=")[1]
    assert str(uuid.UUID(session_id)) == session_id
    expected = uuid.uuid5(uuid.NAMESPACE_URL, "binance-etl-live:/c")
    assert session_remote("sc://h:1/;token=x", "/c") == f"sc://h:1/;token=x;session_id={expected}"
    assert session_remote("sc://h:1/;session_id=abc", "/c") == "sc://h:1/;session_id=abc"


def test_a_wrapped_grpc_error_is_one_line() -> None:
    wrapped = RuntimeError('<_MultiThreadedRendezvous of RPC that terminated with:\n'
                           '\tstatus = StatusCode.UNAVAILABLE\n'
                           '\tdetails = "failed to connect to all addresses"\n>')
    assert first_line(wrapped) == "UNAVAILABLE: failed to connect to all addresses"
    assert first_line(ValueError("first\nsecond")) == "first"


def test_a_server_that_never_answers_is_given_up_on_with_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    remote = f"sc://127.0.0.1:{free_port()}"  # nothing listens there
    settings = load_settings(spark_remote=remote)
    started: list[Any] = []
    with caplog.at_level(logging.INFO, logger="live.remote"):
        code = run_remote(settings, "postgresql://unused", ["BTCUSDT"],
                          lambda *args: started.append(args),  # type: ignore[arg-type,return-value]
                          checkpoint="/tmp/unused", stop=threading.Event(), deadline=None,
                          patience=1.5)
    assert code == 1
    assert started == []
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith(f"spark connect server {remote} is unreachable: Connection refused")
    assert lines[0].endswith("; waiting for it (up to 2 s)")
    assert lines[-1] == (f"spark connect server {remote} did not come back within 2 s: giving "
                         "up (the checkpoint is kept; a restart resumes from it)")
    assert len(lines) == 2


def test_sigterm_while_waiting_for_the_server_stops_cleanly(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = load_settings(spark_remote=f"sc://127.0.0.1:{free_port()}")
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    code = run_remote(settings, "postgresql://unused", ["BTCUSDT"],
                      lambda *args: None,  # type: ignore[arg-type,return-value]
                      checkpoint="/tmp/unused", stop=stop, deadline=None, patience=600)
    assert code == 0
    assert capsys.readouterr().out.startswith("live bars: batches 0, trades 0,")
