"""Pytest fixtures for the s3 area (registered in tests/conftest.py)."""
