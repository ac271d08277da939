"""Pytest fixtures for the backfill area (registered in tests/conftest.py)."""
