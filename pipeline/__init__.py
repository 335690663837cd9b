"""Drift pipeline: read -> bin/align -> measure -> decide -> write. No Prefect here."""
