"""Drift pipeline: read -> bin/align -> measure -> decide -> write (polars + pyarrow, no Prefect)."""
