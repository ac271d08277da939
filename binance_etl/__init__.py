"""Shared layer: settings, the local PostgreSQL, schema migrations, logging."""
