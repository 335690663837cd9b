"""Categorical baselines: which categories a profile keeps, what it records about the ones
it never saw, and how that reaches the test (Good-Turing unseen mass)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.bins.profile import (
    METADATA_KEY,
    UNSEEN_WARNING,
    build_profile,
    read_profile,
    write_profile,
)
from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.labels import MISSING, OTHER, segment_column
from pipeline.measure.unseen import (
    MISSING_CELL,
    ORDINARY,
    OTHER_CELL,
    cell_kinds,
    unseen_cells,
    visible_singletons,
    with_unseen_mass,
)
from pipeline.run import run_drift
from tests.conftest import categorical_histogram
from tests.scenarios import decided


@settings(max_examples=60)
@given(values=st.lists(st.one_of(st.sampled_from("abcdefgh"), st.none()), min_size=1,
                       max_size=60),
       max_categories=st.integers(0, 6), min_count=st.integers(1, 4))
def test_kept_categories_follow_max_and_min_count(values: list, max_categories: int,
                                                  min_count: int) -> None:
    frame = pl.LazyFrame({"c": values}, schema={"c": pl.String})
    profile = build_profile(frame, max_categories=max_categories, min_category_count=min_count)
    seen = Counter(v for v in values if v is not None)
    kept = sorted((v for v in seen if seen[v] >= min_count), key=lambda v: (-seen[v], v))
    assert profile.table["bin"].to_list() == [*kept[:max_categories], OTHER, MISSING]
    detail = profile.metadata["features"]["c"]
    assert (detail["n_categories"], detail["n_kept"]) == (len(seen), min(len(kept),
                                                                        max_categories))


@settings(max_examples=30)
@given(rows=st.lists(st.tuples(st.sampled_from(["EU", "US", None]), st.sampled_from([1, 2]),
                               st.one_of(st.sampled_from("abcdefg"), st.none())),
                     min_size=1, max_size=60))
def test_category_counts_per_segment_match_a_counter(rows: list) -> None:
    frame = pl.DataFrame(rows, schema={"region": pl.String, "version": pl.Int64,
                                       "c": pl.String}, orient="row")
    profile = build_profile(frame.lazy(), segments=["region", "version"])
    records = profile.metadata["categories"]
    subsets = {tuple(sorted(r["segment"])) for r in records}
    assert subsets == {(), ("region",), ("version",), ("region", "version")}
    for record in records:
        mine = [c for region, version, c in rows
                if all({"region": region, "version": str(version)}[k] == v
                       for k, v in record["segment"].items())]
        seen = Counter(c for c in mine if c is not None)
        assert record["rows"] == len(mine)
        assert record["categories"] == len(seen)
        assert record["singletons"] == sum(n == 1 for n in seen.values())
        assert record["doubletons"] == sum(n == 2 for n in seen.values())
    # pooled over version: the recorded subset, not a sum over segments
    by_region = profile.singletons(["region"])
    assert by_region.columns == [segment_column("region"), "feature", "singletons"]
    for region, _feature, singletons in by_region.iter_rows():
        seen = Counter(c for r, _, c in rows if r == region and c is not None)
        assert singletons == sum(n == 1 for n in seen.values())


def test_many_segment_columns_sum_singletons_as_an_upper_bound() -> None:
    frame = pl.LazyFrame({"a": ["x", "x", "y", "y"], "b": ["1", "1", "1", "1"],
                          "c2": ["1"] * 4, "d": ["1"] * 4, "cat": ["p", "q", "p", "r"]})
    profile = build_profile(frame, segments=["a", "b", "c2", "d"])
    assert {len(r["segment"]) for r in profile.metadata["categories"]} == {0, 4}
    # "p" is seen once in each of x and y: two singletons summed, although pooled it is not
    by_a = profile.singletons(["a"]).sort(segment_column("a"))
    assert by_a["singletons"].to_list() == [2, 2]
    assert profile.singletons([])["singletons"].to_list() == [2]  # recorded exactly


def test_unseen_cells_merge_and_keep_totals() -> None:
    kinds = np.array([[ORDINARY, ORDINARY, ORDINARY, OTHER_CELL, MISSING_CELL]])
    current = np.array([[50.0, 30, 6, 9, 5]])
    baseline = np.array([[120.0, 80, 0, 0, 0]])
    cells = unseen_cells(kinds, baseline)
    assert cells.tolist() == [[False, False, True, True, False]]
    cur, base = with_unseen_mass(current, baseline, cells, np.array([0.1]))
    assert cur.tolist() == [[50.0, 30, 15, 0, 5]]
    assert base.tolist() == [[108.0, 72, 20, 0, 0]]  # 10% of 200 rows in the unseen cell
    same = with_unseen_mass(current, baseline, cells, np.array([np.nan]))
    assert [a.tolist() for a in same] == [current.tolist(), baseline.tolist()]
    codes = pl.select(cell_kinds(pl.Series(["a", OTHER, MISSING]))).to_series().to_list()
    assert codes == [ORDINARY, OTHER_CELL, MISSING_CELL]
    assert visible_singletons(kinds, np.array([[1.0, 1, 3, 1, 1]])).tolist() == [2.0]
    assert np.isnan(visible_singletons(kinds, np.array([[1.5, 1, 3, 1, 1]]))).all()


def test_histogram_baseline_counts_its_singletons() -> None:
    base = categorical_histogram("c", {"a": 50.0, "b": 1, "c": 1, "d": 2})
    cur = categorical_histogram("c", {"a": 40.0, "b": 2, "new": 10}, window="w")
    row = decided(base, cur).row(0, named=True)
    assert row["baseline_unseen"] == pytest.approx(2 / 54)


def test_old_profiles_without_category_counts_keep_the_old_test(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    profile = build_profile(pl.LazyFrame({"c": rng.choice(list("abcdefghij"), 40)}))
    path = write_profile(profile, tmp_path / "p.parquet")
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[METADATA_KEY])
    meta["schema_version"] = 2
    for key in ("categories", "warnings", "max_categories", "min_category_count"):
        meta.pop(key)
    pq.write_table(table.replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode()}),
                   path)
    old = read_profile(path)
    assert old.singletons().height == 0 and old.warnings(["c"]) == []
    current = pl.DataFrame({"c": rng.choice(list("abcdefghijklm"), 500)})
    current.write_parquet(tmp_path / "current.parquet")

    def unseen(baseline: Path) -> pl.Series:
        config = load_config(None, {"input.baseline": str(baseline),
                                    "input.current": str(tmp_path / "current.parquet"),
                                    "output.dir": str(tmp_path / "runs")})
        drift = run_drift(config).drift
        assert drift is not None
        return drift["baseline_unseen"]

    assert unseen(path).is_null().all()  # no counts: no estimate, the old test
    new = write_profile(profile, tmp_path / "new.parquet")
    assert unseen(new)[0] == pytest.approx(profile.metadata["features"]["c"]["unseen_share"])


def test_small_baseline_warns_in_the_profile_and_the_run(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    names = [f"c{i:02d}" for i in range(50)]
    probs = 1 / np.arange(1, 51)
    probs /= probs.sum()
    pl.DataFrame({"c": rng.choice(names, 200, p=probs), "x": rng.normal(size=200)}
                 ).write_parquet(tmp_path / "baseline.parquet")
    pl.DataFrame({"c": rng.choice(names, 5000, p=probs), "x": rng.normal(size=5000)}
                 ).write_parquet(tmp_path / "current.parquet")
    config = load_config(None, {"input.baseline": str(tmp_path / "baseline.parquet"),
                                "input.current": str(tmp_path / "current.parquet"),
                                "output.dir": str(tmp_path / "runs")})
    result = run_drift(config)
    share = result.drift.filter(feature="c")["baseline_unseen"][0]  # type: ignore[union-attr]
    assert share > UNSEEN_WARNING
    (warning,) = result.alerts["warnings"]
    assert warning.startswith("feature 'c': baseline too small for its categories: about ")
    assert f"{share:.0%} of its rows belong to categories it never saw" in warning
    assert (result.drift["status"] == "ok").all()  # type: ignore[index]


def test_profile_config_keys_and_the_deprecated_top_k() -> None:
    config = load_config(None, {"profile.top_k": 7})
    assert config.profile.category_limit == 7
    assert load_config(None, {"profile.max_categories": 9}).profile.category_limit == 9
    with pytest.raises(ConfigError, match=r"profile\.top_k: deprecated name of max_categories"):
        load_config(None, {"profile.top_k": 7, "profile.max_categories": 9})
    with pytest.raises(ConfigError, match=r"profile\.min_category_count"):
        load_config(None, {"profile.min_category_count": 0})


def test_effect_is_measured_against_the_baseline_with_its_unseen_mass() -> None:
    from kl_metrics import jackknife

    base = categorical_histogram("c", {"a": 50.0, "b": 1, "c": 1, "d": 2})  # 2 of 54 seen once
    cur = categorical_histogram("c", {"a": 40.0, "b": 2, "new": 10}, window="w")
    row = decided(base, cur).row(0, named=True)
    bins = [b["bin"] for b in row["bins"]]
    u = 2 / 54
    # the new category (baseline 0) holds the unseen share of the 54 baseline rows
    adjusted = {"a": 50 * (1 - u), "b": 1 - u, "c": 1 - u, "d": 2 * (1 - u), "new": 2.0}
    current = {"a": 40.0, "b": 2.0, "c": 0.0, "d": 0.0, "new": 10.0}
    expected = jackknife([current[b] for b in bins], [adjusted[b] for b in bins],
                         "js_distance", base=2)
    assert row["effect"] == pytest.approx(expected.estimate, rel=1e-9)
    assert row["effect_high"] == pytest.approx(expected.high, rel=1e-9)
