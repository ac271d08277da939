"""Pytest fixtures for the replay area (registered in tests/conftest.py)."""
