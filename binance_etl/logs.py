"""Logging set-up shared by every command: rich console output, UTC timestamps."""

from __future__ import annotations

import logging
import os
import sys
import time

from dotenv import dotenv_values


def setup_logging(level: str | int | None = None) -> None:
    """Configure the root logger once; LOG_LEVEL (environment or `.env`) overrides INFO.

    Logging starts before the settings are validated (so that their error can be logged), which
    is why LOG_LEVEL is the one variable read here rather than through `binance_etl.settings`.
    """
    level = level or os.environ.get("LOG_LEVEL") or dotenv_values(".env").get("LOG_LEVEL") or "INFO"
    root = logging.getLogger()
    if getattr(root, "_binance_etl_configured", False):
        root.setLevel(level)
        return
    handler: logging.Handler
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, log_time_format="%H:%M:%S", rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler()
        formatter = logging.Formatter(
            "%(asctime)sZ %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"
        )
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("py4j", "botocore", "urllib3", "httpx", "websockets", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    root._binance_etl_configured = True  # type: ignore[attr-defined]
