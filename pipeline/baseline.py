"""Building a baseline profile as a run configuration says (``kl-drift profile``).

Kept apart from :mod:`pipeline.run` so that profiling imports only what it uses: not the
drift measures, the alert decision or the report writers.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from pipeline.bins.profile import Profile, build_profile
from pipeline.config import RunConfig
from pipeline.errors import ConfigError, InputError
from pipeline.read.frames import Frame
from pipeline.read.location import parse_location
from pipeline.read.sources import (
    ambiguous_columns,
    check_scalar_columns,
    classify_columns,
    describe_source,
    is_profile_file,
    scan_raw,
    source_schema,
)


def build_baseline_profile(config: RunConfig, source: str | Frame | None = None) -> Profile:
    """Profile raw baseline rows as ``[input]`` and ``[profile]`` say.

    Features follow ``input.features``/``input.exclude`` (the timestamp is never one);
    ``input.segments`` get their own baseline histograms. With ``[joint]`` the profile also
    keeps a seeded sample of ``joint.sample_rows`` baseline rows per segment. ``source``
    (any source string) defaults to ``input.baseline``; a database source is profiled in
    the database (only quantiles, top categories and counts leave it); an in-memory table
    (the Python API's ``pipeline.profile``) is profiled where it is. Used by runs with a
    raw baseline, ``kl-drift profile`` and the ``build_baseline`` flow alike.
    """
    settings, options = config.input, config.profile
    source = source or settings.baseline
    if not source:
        raise ConfigError("input.baseline: required to build a profile (a Parquet path)")
    shown = describe_source(source)
    if is_profile_file(source):
        raise InputError("is already a baseline profile, not raw rows; use it as "
                         "input.baseline directly", source=shown)
    schema = source_schema(source, storage_options=settings.storage_options)
    # Profiling reads raw rows: a table that looks like histograms (and has no float data
    # column, which only raw rows have) needs the user to say so.
    if (settings.baseline_format != "raw" and classify_columns(set(schema)) == "histogram"
            and not ambiguous_columns(schema)):
        raise InputError("is a histogram table (feature, bin and count columns), not raw "
                         "rows; use it as input.baseline directly, or set "
                         "input.baseline_format = \"raw\" to profile its columns",
                         source=shown)
    check_scalar_columns(schema, settings.segments, shown)
    location = None if isinstance(source, Frame) else parse_location(source)
    database = location is not None and location.format == "sql"
    if location is not None and database:
        from pipeline.bins.pushdown import profile_in_database  # only for database sources

        build = partial(profile_in_database, location)
    else:
        build = partial(build_profile, scan_raw(source, storage_options=settings.storage_options),
                        source=shown)
    profile = build(
        features=settings.features,
        exclude=(*settings.exclude, *([settings.timestamp] if settings.timestamp else [])),
        segments=settings.segments, strategy=options.strategy, bins=options.bins,
        max_categories=options.category_limit, min_category_count=options.min_category_count,
        fixed_edges=options.fixed_edges or None)
    if not profile.metadata.get("row_count"):
        raise InputError("baseline has no rows, so there is nothing to compare with; check "
                         "input.baseline", source=shown)
    if config.joint is not None:  # the joint drift check's sample of baseline rows
        from pipeline.bins.row_sample import sample_baseline

        if database:
            raise ConfigError("joint: a database baseline cannot keep a sample of rows; "
                              "export the baseline rows to Parquet, or remove [joint]")
        profile = replace(profile, sample=sample_baseline(
            scan_raw(source, storage_options=settings.storage_options), profile.layout,
            segments=settings.segments, size=config.joint.sample_rows, seed=config.joint.seed,
            source=shown))
    return profile
