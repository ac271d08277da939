"""Pytest fixtures for the s3 area (registered in tests/conftest.py).

`s3_server`: moto's S3-compatible server as a real HTTP process thread on 127.0.0.1 and a free
port (ThreadedMotoServer), stopped at the end of the session. `s3_bucket`: a fresh bucket on it,
with dummy credentials in the environment for boto3.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from binance_etl.localpg import free_port


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The name of a new, empty bucket on the test server (credentials set for boto3)."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    name = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return name
