"""Seeded row samples: a uniform sample of each group's rows in one streamed pass, mergeable.

Every row gets a pseudo-random 64-bit key, a hash of the seed and the row's position in
its source (SplitMix64), and a sample keeps the ``size`` rows with the smallest keys of each
group ("bottom-k" sampling): a uniform sample without replacement, like a reservoir, but
one that does not depend on how the rows were batched. Two samples of disjoint parts of
the data merge exactly (the smallest keys of the union are the smallest of the two
samples), so partial samples add up the same way partial histogram counts do, and a
sample of a coarser grouping (segments pooled) is again uniform (:meth:`RowSample.pooled`).
Memory stays bounded by one batch plus ``size`` rows per group.

The baseline profile keeps such a sample of baseline rows for the joint drift check: it is
stored in a Parquet file next to the profile, named in the profile's metadata
(:func:`write_sample`, :func:`read_sample`), so the profile table itself is unchanged.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipeline.errors import InputError
from pipeline.files import atomic_write
from pipeline.labels import segment_column, segment_name
from pipeline.read.sources import iter_batches, read_error, read_errors

#: Column holding each sampled row's key (UInt64).
SAMPLE_KEY = "__sample_key"
#: Key of the sample's entry in the profile metadata.
SAMPLE_ENTRY = "joint_sample"
_TOTAL = "rows"
# SplitMix64 constants (Steele, Lea & Flood 2014): a bijective mix with full avalanche.
_GAMMA, _MIX1, _MIX2 = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9),
                        np.uint64(0x94D049BB133111EB))
_NO_LIMIT = np.iinfo(np.uint64).max


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def row_keys(seed: int, start: int, count: int) -> np.ndarray:
    """Keys of the rows ``start .. start + count - 1`` of a source: SplitMix64 of the seed
    and the row number, uniform on the 64-bit integers and independent across rows.

    >>> keys = row_keys(7, 0, 4)
    >>> bool((row_keys(7, 2, 2) == keys[2:]).all()), bool((row_keys(8, 0, 4) != keys).all())
    (True, True)
    """
    with np.errstate(over="ignore"):
        seed_state = _mix(np.array([seed], dtype=np.uint64) * _GAMMA)
        rows = np.arange(start + 1, start + count + 1, dtype=np.uint64)
        return _mix(seed_state + rows * _GAMMA)


def keep_smallest(rows: pl.DataFrame, groups: Sequence[str], size: int) -> pl.DataFrame:
    """The ``size`` rows with the smallest :data:`SAMPLE_KEY` of each group (all if fewer),
    sorted by group, then key."""
    if groups:
        rows = rows.filter(pl.col(SAMPLE_KEY).rank("ordinal").over(groups) <= size)
    else:
        rows = rows.bottom_k(size, by=SAMPLE_KEY)
    return rows.sort([*groups, SAMPLE_KEY], nulls_last=True)


@dataclass(frozen=True)
class RowSample:
    """A uniform sample without replacement of the rows of each group.

    Attributes
    ----------
    rows : polars.LazyFrame
        The group columns, the sampled columns and :data:`SAMPLE_KEY`: per group, the rows
        with the smallest keys (all rows of a group smaller than ``size``).
    totals : polars.DataFrame
        The group columns and ``rows``: how many rows each group had in the source.
    groups : list of str
        Group columns (none: one group).
    size : int
        Rows kept per group (at most).
    seed : int
        Seed of the row keys.
    """

    rows: pl.LazyFrame
    totals: pl.DataFrame
    groups: list[str]
    size: int
    seed: int

    def collect(self) -> pl.DataFrame:
        """The sampled rows, read or computed."""
        return self.rows.collect()

    def merge(self, other: RowSample) -> RowSample:
        """The sample of the union of two disjoint parts of a source, sampled with the same
        seed, groups and size (keys numbered from each part's first row in the source)."""
        if (other.groups, other.size, other.seed) != (self.groups, self.size, self.seed):
            raise ValueError("samples to merge need the same groups, size and seed")
        rows = keep_smallest(pl.concat([self.collect(), other.collect()]), self.groups,
                             self.size)
        totals = _add_totals([self.totals, other.totals], self.groups)
        return RowSample(rows.lazy(), totals, self.groups, self.size, self.seed)

    def pooled(self, groups: Sequence[str]) -> RowSample:
        """A uniform sample of each coarser group (some group columns dropped).

        A group whose sample holds fewer rows than it has is a bottom-k sample: every row
        of it with a key up to its largest sampled key is in the sample. The rows of a
        coarse group with keys up to the smallest such limit of its parts are therefore
        *all* its rows below that limit: a uniform sample. Capped again at ``size``.

        Raises
        ------
        InputError
            A name that is not a group column of this sample.
        """
        groups = list(dict.fromkeys(groups))
        unknown = [g for g in groups if g not in self.groups]
        if unknown:
            names = ", ".join(segment_name(g) for g in self.groups) or "no segments"
            raise InputError(f"the baseline sample is not split by this column (it has "
                             f"{names}); rebuild the profile with it as a segment",
                             column=segment_name(unknown[0]))
        if groups == self.groups:
            return self
        rows = self.collect()
        limits = (rows.group_by(self.groups).agg(pl.col(SAMPLE_KEY).max().alias("limit"),
                                                 pl.len().alias("kept"))
                  .join(self.totals, on=self.groups, how="left", nulls_equal=True)
                  .with_columns(pl.when(pl.col("kept") < pl.col(_TOTAL)).then("limit")
                                .otherwise(pl.lit(_NO_LIMIT, pl.UInt64)).alias("limit")))
        if groups:
            limits = limits.group_by(groups).agg(pl.col("limit").min())
            rows = rows.join(limits, on=groups, how="left", nulls_equal=True)
        else:
            rows = rows.with_columns(limit=pl.lit(limits["limit"].min(), pl.UInt64))
        kept = keep_smallest(rows.filter(pl.col(SAMPLE_KEY) <= pl.col("limit")).drop("limit")
                             .drop([g for g in self.groups if g not in groups]),
                             groups, self.size)
        return RowSample(kept.lazy(), _add_totals([self.totals], groups), groups, self.size,
                         self.seed)


def _add_totals(parts: Sequence[pl.DataFrame], groups: Sequence[str]) -> pl.DataFrame:
    totals = pl.concat(parts)
    if not groups:
        return totals.select(pl.col(_TOTAL).sum())
    return (totals.group_by(groups).agg(pl.col(_TOTAL).sum())
            .sort(groups, nulls_last=True))


def sample_rows(query: pl.LazyFrame, *, groups: Sequence[str], size: int, seed: int,
                source: str, start: int = 0) -> RowSample:
    """Sample ``size`` rows of each group of ``query`` in one streamed pass.

    Parameters
    ----------
    query : polars.LazyFrame
        The rows, already reduced to the group columns and the columns to keep.
    groups : sequence of str
        Columns of ``query`` whose distinct values are sampled separately.
    size : int
        Rows kept per group (>= 1).
    seed : int
        Seed of the row keys: the same seed and source give the same sample.
    source : str
        Named in read errors.
    start : int
        Position of the query's first row in the whole source, for samples of parts of a
        source that are merged later (:meth:`RowSample.merge`).

    Returns
    -------
    RowSample

    Examples
    --------
    >>> import polars as pl
    >>> frame = pl.LazyFrame({"g": ["a", "b"] * 50, "x": range(100)})
    >>> whole = sample_rows(frame, groups=["g"], size=5, seed=1, source="demo")
    >>> parts = [sample_rows(frame.slice(s, 50), groups=["g"], size=5, seed=1, source="demo",
    ...                      start=s) for s in (0, 50)]
    >>> parts[0].merge(parts[1]).collect().equals(whole.collect())
    True
    >>> whole.totals.to_dicts()
    [{'g': 'a', 'rows': 50}, {'g': 'b', 'rows': 50}]
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    groups = list(groups)
    schema = query.collect_schema()
    kept = pl.DataFrame(schema={**schema, SAMPLE_KEY: pl.UInt64})
    totals = [pl.DataFrame(schema={**{g: schema[g] for g in groups}, _TOTAL: pl.Int64})]
    position = start
    for batch in iter_batches(query, source):
        keyed = batch.with_columns(pl.Series(SAMPLE_KEY, row_keys(seed, position, batch.height)))
        position += batch.height
        kept = keep_smallest(pl.concat([kept, keyed]), groups, size)
        counts = (batch.group_by(groups).len(_TOTAL) if groups
                  else pl.DataFrame({_TOTAL: [batch.height]}))
        totals.append(counts.with_columns(pl.col(_TOTAL).cast(pl.Int64)))
    return RowSample(kept.lazy(), _add_totals(totals, groups), groups, size, seed)


# --- stored with the profile ---------------------------------------------------------------
def _sibling(profile_path: Path, token: str) -> Path:
    return profile_path.with_name(f"{profile_path.name}.sample-{token}.parquet")


def write_sample(sample: RowSample, profile_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Write ``sample`` atomically next to the profile at ``profile_path``; return the entry
    that names it in the profile's metadata (under :data:`SAMPLE_ENTRY`).

    The file name carries a fresh token, so a profile never names a sample written for
    another one; write the profile after this, then :func:`remove_stale_samples`.
    """
    path = _sibling(Path(profile_path), secrets.token_hex(6))
    rows = sample.collect()
    atomic_write(path, rows.write_parquet)
    return {"file": path.name, "rows": rows.height, "size": sample.size, "seed": sample.seed,
            "groups": sample.groups, "totals": sample.totals.to_dicts()}


def remove_stale_samples(profile_path: str | os.PathLike[str], keep: str | None) -> None:
    """Delete sample files of earlier profiles at ``profile_path`` (all but ``keep``)."""
    path = Path(profile_path)
    for old in path.parent.glob(f"{path.name}.sample-*.parquet"):
        if old.name != keep:
            old.unlink(missing_ok=True)


def read_sample(profile_path: str | os.PathLike[str],
                metadata: Mapping[str, Any]) -> RowSample | None:
    """The sample a profile's metadata names (read lazily), or ``None`` if it names none.

    Raises
    ------
    InputError
        The named file is missing, unreadable or not the sample the entry describes.
    """
    entry = metadata.get(SAMPLE_ENTRY)
    if entry is None:
        return None
    where = os.fspath(profile_path)
    try:  # with_name refuses names with a path separator: the file lies next to the profile
        path = Path(where).with_name(entry["file"])
        groups, totals = list(entry["groups"]), pl.DataFrame(entry["totals"])
        size, seed, expected = int(entry["size"]), int(entry["seed"]), int(entry["rows"])
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"malformed {SAMPLE_ENTRY} entry in the profile metadata; rebuild "
                         "the profile", source=where) from error
    if not path.is_file():
        raise InputError(f"the profile's baseline sample {entry['file']!r} is missing next "
                         "to it; copy it along with the profile or rebuild the profile",
                         source=where)
    try:
        found = pl.scan_parquet(path, glob=False).select(pl.len()).collect().item()
    except read_errors() as error:
        raise read_error(error, os.fspath(path)) from error
    if found != expected:
        raise InputError(f"the baseline sample has {found} rows, the profile names one of "
                         f"{expected}; rebuild the profile", source=os.fspath(path))
    if totals.is_empty():
        totals = pl.DataFrame(schema={**dict.fromkeys(groups, pl.String), _TOTAL: pl.Int64})
    return RowSample(pl.scan_parquet(path), totals, groups, size, seed)


# --- feature rows -----------------------------------------------------------------------
def feature_exprs(layout: pl.DataFrame, features: Sequence[str]) -> list[pl.Expr]:
    """The columns of ``features`` as the profile's kinds read them: numbers as Float64,
    categories (text, categoricals, booleans) as text, like binning does."""
    kinds = dict(layout.select("feature", "kind").unique("feature").iter_rows())
    return [pl.col(f).cast(pl.Float64 if kinds[f] == "numeric" else pl.String) for f in features]


def sample_baseline(raw: pl.LazyFrame, layout: pl.DataFrame, *, segments: Sequence[str],
                    size: int, seed: int, source: str) -> RowSample:
    """A sample of ``size`` baseline rows per segment, with every feature of the profile
    ``layout``, for :attr:`pipeline.bins.profile.Profile.sample`.

    Parameters
    ----------
    raw : polars.LazyFrame
        The baseline rows the profile was built from.
    layout : polars.DataFrame
        The profile's bin layout (features and kinds).
    segments : sequence of str
        The profile's segment columns, by name: cast to text and, in the sample, under
        their private names (:func:`pipeline.labels.segment_column`), like the profile's.
    size, seed, source
        As in :func:`sample_rows`.
    """
    features = layout["feature"].unique(maintain_order=True).to_list()
    private = [segment_column(s) for s in segments]
    query = raw.select(*(pl.col(s).cast(pl.String).alias(p) for s, p in zip(
        segments, private, strict=True)), *feature_exprs(layout, features))
    return sample_rows(query, groups=private, size=size, seed=seed, source=source)
