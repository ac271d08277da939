"""Pytest fixtures for the ingest area (registered in tests/conftest.py)."""
