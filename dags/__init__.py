"""Orchestration definitions, one file per workflow (see docs/orchestration.md)."""
