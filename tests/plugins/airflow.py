"""Pytest fixtures for the airflow area (registered in tests/conftest.py)."""
