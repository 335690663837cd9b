"""Shared test helpers (keep small; other test modules may append)."""

from __future__ import annotations

import math
import os

import numpy as np
import polars as pl
import pytest
from hypothesis import Phase, settings

MUTATION_ENV = "KL_DRIFT_MUTATION"  # set by bench/mutation.py for its test runs

# No per-example deadline: the machines are shared and timing is not what these tests check.
# CI draws the same examples every run, so a red build always reproduces.
settings.register_profile("dev", deadline=None)
settings.register_profile("ci", settings.get_profile("dev"), derandomize=True, print_blob=True)
# bench/mutation.py: the same examples every run (reproducible scores), and no shrinking: a
# killed mutant needs one failing example, not the smallest (shrinking can take minutes).
settings.register_profile("mutation", settings.get_profile("ci"), database=None,
                          phases=(Phase.explicit, Phase.generate))
settings.load_profile("mutation" if os.environ.get(MUTATION_ENV)
                      else "ci" if os.environ.get("CI") else "dev")


def numeric_histogram(feature: str, edges: list[float], counts: list[float],
                      **columns: object) -> pl.DataFrame:
    """Histogram long table of one numeric feature; ``edges`` are inner edges, tails open.

    ``counts`` has ``len(edges) + 1`` numeric bins, optionally one more for __missing__.
    Extra keyword columns (segments, window) are broadcast to every row.
    """
    lower = [-math.inf, *edges]
    upper = [*edges, math.inf]
    labels = [f"[{lo:g}, {hi:g})" for lo, hi in zip(lower, upper, strict=True)]
    if len(counts) == len(labels) + 1:
        labels, lower, upper = [*labels, "__missing__"], [*lower, None], [*upper, None]
    frame = pl.DataFrame({"feature": feature, "bin": labels, "count": np.asarray(counts, float),
                          "lower": lower, "upper": upper},
                         schema_overrides={"lower": pl.Float64, "upper": pl.Float64})
    return frame.with_columns(**{k: pl.lit(v) for k, v in columns.items()})


def categorical_histogram(feature: str, counts: dict[str, float],
                          **columns: object) -> pl.DataFrame:
    """Histogram long table of one categorical feature, bins in the dict's order."""
    frame = pl.DataFrame({"feature": feature, "bin": list(counts),
                          "count": np.asarray(list(counts.values()), float)})
    return frame.with_columns(**{k: pl.lit(v) for k, v in columns.items()})


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261124)


# Real servers (PostgreSQL, an S3-compatible endpoint, a Pushgateway): tests/servers.py
from tests.servers import postgres_url, pushgateway, s3  # noqa: E402, F401
