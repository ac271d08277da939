"""The daily batch: one UTC day of raw trades → star schema → Parquet lake → warehouse."""
