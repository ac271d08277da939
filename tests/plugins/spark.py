"""Pytest fixtures for the spark area (registered in tests/conftest.py)."""
