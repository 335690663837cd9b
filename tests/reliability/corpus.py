"""A corpus of hostile inputs, configs, names and output locations, each with its expected
outcome, for driving the ``kl-drift`` CLI as a user would (tests/reliability/test_corpus.py).

Each :class:`Case` builds its files in a fresh folder and returns the command line; its
expectation is explicit: the exit code (0 ok, 1 alerts at or above ``--fail-on``, 2 bad
input, config or output location; 3, a crash, is never expected unless the case injects a
bug), the strings the one stderr line must name (file, feature, column, key or path;
``{tmp}`` stands for the case's folder), warning lines expected on stderr, and an optional
check of what the run wrote. Families of cases (reserved names, config keys, payloads) are
generated from tables, one id each.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from pipeline.bins.profile import build_profile, write_profile
from pipeline.config import load_config
from pipeline.formats import ALERTS_FILE, DRIFT_FILE
from pipeline.run import run_drift
from tests.conftest import categorical_histogram, numeric_histogram

OUT, RUN = "out", "r"


@dataclass(frozen=True)
class Data:
    """Shared, valid inputs the cases start from (never modified by a case)."""

    root: Path
    raw: Path  # raw baseline rows: ts, x (float), c (text), n (int), region
    profile: Path  # profile of x, c, n
    profile_seg: Path  # the same, segmented by region
    current: Path  # raw current rows, same distribution: exit 0
    drifted: Path  # raw current rows, x shifted by one sd: exit 1
    hist_base: Path  # histogram tables of x and c
    hist_cur: Path


Build = Callable[[Data, Path], list[str]]
Check = Callable[[Data, Path], None]


@dataclass(frozen=True)
class Case:
    """One hostile situation and what the CLI must do with it."""

    id: str
    category: str
    build: Build
    exit: int
    names: tuple[str, ...] = ()  # the stderr line names each of these (exit 2)
    warns: tuple[str, ...] = ()  # exactly these warning lines on stderr (exit 0 / 1)
    check: Check | None = None
    bug: str = ""  # an injected bug: this function raises, and exit 3 is right
    whole: bool = True  # every run folder is one whole run afterwards (False: the case
    # damaged one on purpose)


CASES: list[Case] = []


def case(case_id: str, category: str, exit: int, *names: str, warns: tuple[str, ...] = (),
         check: Check | None = None, bug: str = "") -> Callable[[Build], Build]:
    """Register the decorated builder as a case."""

    def register(build: Build) -> Build:
        CASES.append(Case(case_id, category, build, exit, names, warns, check, bug))
        return build

    return register


# --- data --------------------------------------------------------------------------------

def frame(rows: int, *, seed: int, shift: float = 0.0, start: datetime = datetime(2024, 3, 1),
          days: float = 3.0) -> pl.DataFrame:
    """Raw rows: a UTC timestamp, a float, a text and an integer feature, a region."""
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.integers(0, int(days * 86_400), rows))
    stamps = np.datetime64(start, "us") + seconds.astype("timedelta64[s]")
    return pl.DataFrame({
        "ts": pl.Series(stamps).dt.replace_time_zone("UTC"),
        "x": rng.normal(shift, 1.0, rows),
        "c": rng.choice(["a", "b", "c"], rows, p=[0.5, 0.3, 0.2]),
        "n": rng.integers(0, 10, rows),
        "region": rng.choice(["EU", "US"], rows),
    })


def make_data(root: Path) -> Data:
    raw = frame(4000, seed=1)
    paths = {name: root / f"{name}.parquet" for name in
             ("raw", "profile", "profile_seg", "current", "drifted", "hist_base", "hist_cur")}
    raw.write_parquet(paths["raw"])
    scan = pl.scan_parquet(paths["raw"])
    write_profile(build_profile(scan, exclude=["ts", "region"]), paths["profile"])
    write_profile(build_profile(scan, exclude=["ts"], segments=["region"]),
                  paths["profile_seg"])
    frame(2000, seed=2, start=datetime(2024, 3, 10), days=2).write_parquet(paths["current"])
    frame(2000, seed=3, shift=1.0, start=datetime(2024, 3, 10), days=2).write_parquet(
        paths["drifted"])
    pl.concat([numeric_histogram("x", [-1, 0, 1], [160, 340, 340, 160]),
               categorical_histogram("c", {"a": 500, "b": 300, "c": 200})],
              how="diagonal").write_parquet(paths["hist_base"])
    hist_cur(x=[150, 350, 330, 170]).write_parquet(paths["hist_cur"])
    return Data(root, **paths)


def hist_cur(*, x: list[float], lower: list[float | None] | None = None,
             upper: list[float | None] | None = None) -> pl.DataFrame:
    """A current histogram table of x (4 numeric bins) and c."""
    table = numeric_histogram("x", [-1, 0, 1], x)
    if lower is not None:
        table = table.with_columns(lower=pl.Series(lower, dtype=pl.Float64))
    if upper is not None:
        table = table.with_columns(upper=pl.Series(upper, dtype=pl.Float64))
    return pl.concat([table, categorical_histogram("c", {"a": 480, "b": 320, "c": 200})],
                     how="diagonal")


# --- helpers for builders and checks -------------------------------------------------------

def run_args(d: Data, tmp: Path, *extra: str, baseline: Path | str | None = None,
             current: Path | str | None = None, windows: bool = False) -> list[str]:
    """``kl-drift run`` of ``baseline`` (the profile) against ``current`` into tmp/out."""
    return ["run", "--baseline", str(baseline or d.profile), "--current",
            str(current or d.current), "--out", str(tmp / OUT), "--run-id", RUN, "-q",
            *(["--timestamp", "ts", "--period", "1d"] if windows else []), *extra]


def write(tmp: Path, name: str, table: pl.DataFrame) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    table.write_parquet(path)
    return path


def text_file(tmp: Path, name: str, content: str | bytes) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    return path


def config(tmp: Path, toml: str, name: str = "kl.toml") -> Path:
    return text_file(tmp, name, toml)


def current(d: Data, rows: int = 2000, **columns: object) -> pl.DataFrame:
    """The valid current rows (or as many more of the same), with some columns replaced (a
    Series, an expression or a scalar)."""
    table = (pl.read_parquet(d.current).head(rows) if rows <= 2000 else
             frame(rows, seed=2, start=datetime(2024, 3, 10), days=2))
    return table.with_columns(**{k: v if isinstance(v, pl.Series | pl.Expr) else pl.lit(v)
                                 for k, v in columns.items()})


def drift_table(tmp: Path) -> pl.DataFrame:
    return pl.read_parquet(tmp / OUT / RUN / DRIFT_FILE)


def alerts(tmp: Path) -> dict:
    return json.loads((tmp / OUT / RUN / ALERTS_FILE).read_text())


def statuses_are(**expected: str) -> Check:
    """Check: each named feature's rows all have this status."""

    def check(_d: Data, tmp: Path) -> None:
        table = drift_table(tmp)
        for feature, status in expected.items():
            found = set(table.filter(feature=feature)["status"])
            assert found == {status}, (feature, found, table.filter(feature=feature)["reason"])

    return check


def n_current_is(feature: str, n: float) -> Check:
    def check(_d: Data, tmp: Path) -> None:
        assert drift_table(tmp).filter(feature=feature)["n_current"].sum() == n

    return check


def good_run(d: Data, tmp: Path, *extra: str) -> Path:
    """A finished run in tmp/out/r (for report and rerun cases); returns its folder."""
    overrides = {"input.baseline": str(d.profile), "input.current": str(d.drifted),
                 "output.dir": str(tmp / OUT), "output.run_id": RUN}
    run_drift(load_config(None, overrides))
    return tmp / OUT / RUN


def scramble(path: Path) -> None:
    """Overwrite the data pages of a Parquet file, keeping its footer readable."""
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little") + 8
    for i in range(4, len(data) - footer):
        data[i] = (data[i] * 7 + 13) % 256
    path.write_bytes(bytes(data))


def edited_profile(d: Data, tmp: Path, edit: Callable[[pl.DataFrame], pl.DataFrame],
                   metadata: Callable[[dict[bytes, bytes]], dict[bytes, bytes]] | None = None
                   ) -> Path:
    """The profile with its table (and optionally its footer) edited by hand."""
    arrow = pq.read_table(d.profile)
    meta = dict(arrow.schema.metadata or {})
    table = edit(pl.from_arrow(arrow))  # type: ignore[arg-type]
    out = table.to_arrow().replace_schema_metadata(metadata(meta) if metadata else meta)
    path = tmp / "edited_profile.parquet"
    pq.write_table(out, path)
    return path


# ===========================================================================================
# Hostile files
# ===========================================================================================

@case("not-parquet-current", "files", 2, "{tmp}/cur.parquet", "Parquet")
def _(d: Data, tmp: Path) -> list[str]:
    return run_args(d, tmp, current=text_file(tmp, "cur.parquet", "id,x\n1,2\n"))


@case("not-parquet-baseline", "files", 2, "{tmp}/base.parquet")
def _(d: Data, tmp: Path) -> list[str]:
    return run_args(d, tmp, baseline=text_file(tmp, "base.parquet", "PAR1 but not really"))


@case("truncated-current", "files", 2, "{tmp}/cur.parquet")
def _(d: Data, tmp: Path) -> list[str]:
    data = d.current.read_bytes()
    return run_args(d, tmp, current=text_file(tmp, "cur.parquet", data[: len(data) // 2]))


@case("truncated-profile", "files", 2, "{tmp}/base.parquet")
def _(d: Data, tmp: Path) -> list[str]:
    data = d.profile.read_bytes()
    return run_args(d, tmp, baseline=text_file(tmp, "base.parquet", data[: len(data) - 100]))


@case("corrupt-pages-current", "files", 2, "{tmp}/cur.parquet")
def _(d: Data, tmp: Path) -> list[str]:
    """Footer intact, data pages overwritten: only reading the rows finds it."""
    path = write(tmp, "cur.parquet", current(d))
    scramble(path)
    return run_args(d, tmp, current=path)


@case("empty-file-current", "files", 2, "{tmp}/cur.parquet")
def _(d: Data, tmp: Path) -> list[str]:
    return run_args(d, tmp, current=text_file(tmp, "cur.parquet", b""))


@case("empty-file-baseline", "files", 2, "{tmp}/base.parquet")
def _(d: Data, tmp: Path) -> list[str]:
    return run_args(d, tmp, baseline=text_file(tmp, "base.parquet", b""))


@case("zero-rows-current", "files", 2, "{tmp}/cur.parquet", "no rows")
def _(d: Data, tmp: Path) -> list[str]:
    return run_args(d, tmp, current=write(tmp, "cur.parquet", current(d, rows=0)))


@case("zero-rows-raw-baseline", "files", 2, "{tmp}/base.parquet", "no rows")
def _(d: Data, tmp: Path) -> list[str]:
    return run_args(d, tmp, baseline=write(tmp, "base.parquet", current(d, rows=0)))


@case("zero-rows-profile-command", "files", 2, "{tmp}/base.parquet", "no rows")
def _(d: Data, tmp: Path) -> list[str]:
    return ["profile", str(write(tmp, "base.parquet", current(d, rows=0))), "--out",
            str(tmp / "p.parquet"), "-q"]


@case("profile-of-a-profile", "files", 2, "profile.parquet", "already a baseline profile")
def _(d: Data, tmp: Path) -> list[str]:
    return ["profile", str(d.profile), "--out", str(tmp / "p.parquet"), "-q"]


@case("profile-of-a-histogram-table", "files", 2, "hist_base.parquet", "histogram table")
def _(d: Data, tmp: Path) -> list[str]:
    return ["profile", str(d.hist_base), "--out", str(tmp / "p.parquet"), "-q"]


@case("profile-of-not-parquet", "files", 2, "{tmp}/raw.parquet")
def _(d: Data, tmp: Path) -> list[str]:
    return ["profile", str(text_file(tmp, "raw.parquet", "x\n1\n")), "--out",
            str(tmp / "p.parquet"), "-q"]


@case("profile-of-a-missing-file", "files", 2, "{tmp}/nowhere.parquet")
def _(d: Data, tmp: Path) -> list[str]:
    return ["profile", str(tmp / "nowhere.parquet"), "--out", str(tmp / "p.parquet"), "-q"]


@case("all-null-float-current", "files", 1, check=statuses_are(x="critical"))
def _(d: Data, tmp: Path) -> list[str]:
    """Every x missing now: all rows move to the __missing__ bin, a real drift."""
    nulls = pl.Series("x", [None] * 2000, dtype=pl.Float64)
    return run_args(d, tmp, current=write(tmp, "cur.parquet", current(d, x=nulls)))


@case("all-null-untyped-current", "files", 1, check=statuses_are(x="critical"))
def _(d: Data, tmp: Path) -> list[str]:
    """A writer that saw only nulls stores the column as Null: still every x missing."""
    return run_args(d, tmp, current=write(tmp, "cur.parquet",
                                          current(d, x=pl.Series("x", [None] * 2000))))


@case("all-null-raw-baseline", "files", 1, check=statuses_are(x="critical", c="ok"))
def _(d: Data, tmp: Path) -> list[str]:
    """A baseline column without any value: profiled as all-missing, so values now drift."""
    base = pl.read_parquet(d.raw).with_columns(x=pl.lit(None, pl.Float64))
    return run_args(d, tmp, baseline=write(tmp, "base.parquet", base))


@case("nan-values-current", "files", 1, check=statuses_are(x="critical"))
def _(d: Data, tmp: Path) -> list[str]:
    table = current(d).with_columns(
        x=pl.when(pl.int_range(pl.len()) % 2 == 0).then(float("nan")).otherwise(pl.col("x")))
    return run_args(d, tmp, current=write(tmp, "cur.parquet", table))


@case("inf-values-current", "files", 1, check=statuses_are(x="critical"))
def _(d: Data, tmp: Path) -> list[str]:
    table = current(d).with_columns(
        x=pl.when(pl.int_range(pl.len()) % 3 == 0).then(float("inf"))
        .when(pl.int_range(pl.len()) % 3 == 1).then(float("-inf")).otherwise(pl.col("x")))
    return run_args(d, tmp, current=write(tmp, "cur.parquet", table))


@case("huge-values-uniform-profile", "files", 0)
def _(d: Data, tmp: Path) -> list[str]:
    """Values near the float limits: uniform edges must not overflow (max - min is inf)."""
    base = pl.read_parquet(d.raw).with_columns(x=pl.col("x") * 1e307)
    cfg = config(tmp, "[profile]\nstrategy = \"uniform\"\n")
    return run_args(d, tmp, "--config", str(cfg), baseline=write(tmp, "base.parquet", base),
                    current=write(tmp, "cur.parquet", current(d).with_columns(
                        x=pl.col("x") * 1e307)))


for _strategy in ("uniform", "quantile"):
    for _key, _values in (("max-range", (1.7e308, -1.7e308)), ("only-inf", (np.inf, -np.inf)),
                          ("inf-and-nan", (np.inf, np.nan)), ("subnormal", (5e-324, -5e-324))):
        def _extreme_baseline(d: Data, tmp: Path, values: tuple[float, float] = _values,
                              strategy: str = _strategy) -> list[str]:
            """A baseline whose values span the whole float range, or hold no finite
            number, or only the smallest ones: edges stay finite and ordered."""
            base = pl.read_parquet(d.raw).with_columns(
                x=pl.when(pl.int_range(pl.len()) % 2 == 0).then(values[0]).otherwise(values[1]))
            cfg = config(tmp, f"[profile]\nstrategy = \"{strategy}\"\n")
            return run_args(d, tmp, "--config", str(cfg), "--fail-on", "never",
                            baseline=write(tmp, "base.parquet", base))

        CASES.append(Case(f"extreme-baseline-{_key}-{_strategy}", "files", _extreme_baseline, 0))


@case("constant-baseline-feature", "files", 1, check=statuses_are(x="critical"))
def _(d: Data, tmp: Path) -> list[str]:
    base = pl.read_parquet(d.raw).with_columns(x=pl.lit(3.0))
    return run_args(d, tmp, baseline=write(tmp, "base.parquet", base))


@case("one-row-raw-baseline", "files", 0,
      check=statuses_are(x="insufficient_data", c="insufficient_data", n="insufficient_data"))
def _(d: Data, tmp: Path) -> list[str]:
    return run_args(d, tmp, baseline=write(tmp, "base.parquet", pl.read_parquet(d.raw).head(1)))


@case("one-row-current", "files", 0, check=statuses_are(x="insufficient_data"))
def _(d: Data, tmp: Path) -> list[str]:
    return run_args(d, tmp, current=write(tmp, "cur.parquet", current(d, rows=1)))


@case("extreme-float-current", "files", 1, check=statuses_are(x="critical"))
def _(d: Data, tmp: Path) -> list[str]:
    """Values of +-1.7e308 and subnormals fall in the tails and the middle: no overflow."""
    table = current(d).with_columns(
        x=pl.when(pl.int_range(pl.len()) % 2 == 0).then(1.7e308).otherwise(-1.7e308))
    return run_args(d, tmp, current=write(tmp, "cur.parquet", table))


for _count, _what in ((float("nan"), "nan"), (float("inf"), "inf"), (-5.0, "negative"),
                      (2.0**63, "huge")):
    def _hist_count(d: Data, tmp: Path, count: float = _count) -> list[str]:
        table = hist_cur(x=[150, count, 330, 170])
        return run_args(d, tmp, baseline=d.hist_base,
                        current=write(tmp, "cur.parquet", table))

    CASES.append(Case(f"histogram-{_what}-count", "files", _hist_count, 2,
                      ("{tmp}/cur.parquet", "count")))


@case("histogram-count-as-text", "files", 2, "{tmp}/cur.parquet", "count")
def _(d: Data, tmp: Path) -> list[str]:
    table = hist_cur(x=[150, 350, 330, 170]).with_columns(pl.col("count").cast(pl.String))
    return run_args(d, tmp, baseline=d.hist_base, current=write(tmp, "cur.parquet", table))


@case("histogram-without-count", "files", 2, "{tmp}/cur.parquet")
def _(d: Data, tmp: Path) -> list[str]:
    """feature and bin but no count: not a histogram table, and not the baseline's raw
    rows either; the error must be about this file, not the baseline."""
    table = hist_cur(x=[150, 350, 330, 170]).drop("count")
    return run_args(d, tmp, baseline=d.hist_base, current=write(tmp, "cur.parquet", table))


@case("histogram-baseline-without-count", "files", 2, "{tmp}/base.parquet")
def _(d: Data, tmp: Path) -> list[str]:
    table = pl.read_parquet(d.hist_base).drop("count")
    return run_args(d, tmp, baseline=write(tmp, "base.parquet", table), current=d.hist_cur)


@case("histogram-overlapping-edges", "files", 2, "{tmp}/cur.parquet", "'x'", "overlap")
def _(d: Data, tmp: Path) -> list[str]:
    table = hist_cur(x=[150, 350, 330, 170], lower=[-np.inf, -1.5, 0, 1],
                     upper=[-1, 0, 1, np.inf])
    return run_args(d, tmp, baseline=d.hist_base, current=write(tmp, "cur.parquet", table))


@case("histogram-nan-edge", "files", 2, "{tmp}/cur.parquet", "'x'", "NaN")
def _(d: Data, tmp: Path) -> list[str]:
    table = hist_cur(x=[150, 350, 330, 170], lower=[-np.inf, -1, np.nan, 1])
    return run_args(d, tmp, baseline=d.hist_base, current=write(tmp, "cur.parquet", table))


@case("histogram-lower-above-upper", "files", 2, "{tmp}/cur.parquet", "'x'", "lower > upper")
def _(d: Data, tmp: Path) -> list[str]:
    table = hist_cur(x=[150, 350, 330, 170], lower=[-np.inf, -1, 2, 1],
                     upper=[-1, 0, 1, np.inf])
    return run_args(d, tmp, baseline=d.hist_base, current=write(tmp, "cur.parquet", table))


@case("histogram-baseline-nan-edge", "files", 2, "{tmp}/base.parquet", "'x'", "NaN")
def _(d: Data, tmp: Path) -> list[str]:
    table = pl.read_parquet(d.hist_base).with_columns(
        upper=pl.when(pl.col("bin") == "[0, 1)").then(float("nan")).otherwise("upper"))
    return run_args(d, tmp, baseline=write(tmp, "base.parquet", table), current=d.hist_cur)


@case("histogram-duplicate-bins", "files", 2, "{tmp}/cur.parquet", "duplicates")
def _(d: Data, tmp: Path) -> list[str]:
    table = pl.read_parquet(d.hist_cur)
    return run_args(d, tmp, baseline=d.hist_base,
                    current=write(tmp, "cur.parquet", pl.concat([table, table.head(1)])))


@case("histogram-duplicate-bins-summed", "files", 0)
def _(d: Data, tmp: Path) -> list[str]:
    table = pl.read_parquet(d.hist_cur)
    halves = table.with_columns(pl.col("count") / 2)
    return run_args(d, tmp, "--config", str(config(tmp, "[input]\nduplicates = \"sum\"\n")),
                    baseline=d.hist_base,
                    current=write(tmp, "cur.parquet", pl.concat([halves, halves])))


@case("histogram-duplicates-summed-overflow", "files", 2, "{tmp}/cur.parquet", "count", "2**53")
def _(d: Data, tmp: Path) -> list[str]:
    """Each count is fine, their sum is not: huge totals overflow the simulated null."""
    table = pl.read_parquet(d.hist_cur).with_columns(pl.col("count") * 0 + 2.0**52.5)
    return run_args(d, tmp, "--config", str(config(tmp, "[input]\nduplicates = \"sum\"\n")),
                    baseline=d.hist_base,
                    current=write(tmp, "cur.parquet", pl.concat([table, table])))


@case("histogram-null-bin-label", "files", 2, "{tmp}/cur.parquet", "bin")
def _(d: Data, tmp: Path) -> list[str]:
    table = pl.read_parquet(d.hist_cur).with_columns(
        bin=pl.when(pl.int_range(pl.len()) == 0).then(None).otherwise("bin"))
    return run_args(d, tmp, baseline=d.hist_base, current=write(tmp, "cur.parquet", table))


@case("histogram-window-labels", "files", 0)
def _(d: Data, tmp: Path) -> list[str]:
    table = pl.concat([pl.read_parquet(d.hist_cur).with_columns(window=pl.lit(w))
                       for w in ("week 1", "week 2")])
    return run_args(d, tmp, baseline=d.hist_base, current=write(tmp, "cur.parquet", table))


@case("histogram-baseline-raw-current", "files", 2, "{tmp}/base.parquet")
def _(d: Data, tmp: Path) -> list[str]:
    return run_args(d, tmp, baseline=write(tmp, "base.parquet", pl.read_parquet(d.hist_base)))


@case("int-and-float-across-a-glob", "files", 0, check=n_current_is("n", 2000))
def _(d: Data, tmp: Path) -> list[str]:
    """One file's n holds integers, another's floats: both numbers, read as Float64."""
    table = current(d)
    write(tmp, "glob/a.parquet", table.head(1000))
    write(tmp, "glob/b.parquet", table.tail(1000).with_columns(pl.col("n").cast(pl.Float64)))
    return run_args(d, tmp, current=f"{tmp}/glob/*.parquet")


@case("text-and-float-across-a-glob", "files", 2, "{tmp}/glob/", "'x'")
def _(d: Data, tmp: Path) -> list[str]:
    table = current(d)
    write(tmp, "glob/a.parquet", table.head(1000).with_columns(pl.col("x").cast(pl.String)))
    write(tmp, "glob/b.parquet", table.tail(1000))
    return run_args(d, tmp, current=f"{tmp}/glob/*.parquet")


@case("missing-column-across-a-glob", "files", 2, "{tmp}/glob/", "'c'")
def _(d: Data, tmp: Path) -> list[str]:
    table = current(d)
    write(tmp, "glob/a.parquet", table.head(1000).drop("c"))
    write(tmp, "glob/b.parquet", table.tail(1000))
    return run_args(d, tmp, current=f"{tmp}/glob/*.parquet")


@case("hive-key-conflicts-with-column", "files", 2, "region=EU", "'region'")
def _(d: Data, tmp: Path) -> list[str]:
    table = current(d)
    write(tmp, "hive/region=EU/part.parquet", table)  # holds US rows too
    return run_args(d, tmp, "--segment", "region", baseline=d.profile_seg,
                    current=tmp / "hive")


@case("hive-key-agrees-with-column", "files", 0, check=n_current_is("x", 2000))
def _(d: Data, tmp: Path) -> list[str]:
    table = current(d)
    for region in ("EU", "US"):
        write(tmp, f"hive/region={region}/part.parquet", table.filter(region=region))
    return run_args(d, tmp, "--segment", "region", baseline=d.profile_seg,
                    current=tmp / "hive")


@case("hive-folders-as-segments", "files", 0, check=n_current_is("x", 2000))
def _(d: Data, tmp: Path) -> list[str]:
    table = current(d)
    for region in ("EU", "US"):
        write(tmp, f"hive/region={region}/part.parquet",
              table.filter(region=region).drop("region"))
    return run_args(d, tmp, "--segment", "region", baseline=d.profile_seg,
                    current=tmp / "hive")


@case("symlink-loop-in-folder", "files", 0, check=n_current_is("x", 2000))
def _(d: Data, tmp: Path) -> list[str]:
    """``latest -> .``: every file is still read once."""
    write(tmp, "cur/part.parquet", current(d))
    (tmp / "cur" / "latest").symlink_to(".")
    (tmp / "cur" / "up").symlink_to("..")
    return run_args(d, tmp, current=tmp / "cur")


@case("symlink-to-the-same-file", "files", 0, check=n_current_is("x", 2000))
def _(d: Data, tmp: Path) -> list[str]:
    write(tmp, "cur/part.parquet", current(d))
    (tmp / "cur" / "alias.parquet").symlink_to("part.parquet")
    return run_args(d, tmp, current=tmp / "cur")


@case("broken-symlink-current", "files", 2, "{tmp}/cur.parquet")
def _(d: Data, tmp: Path) -> list[str]:
    (tmp / "cur.parquet").symlink_to(tmp / "gone.parquet")
    return run_args(d, tmp, current=tmp / "cur.parquet")


@case("folder-without-parquet", "files", 2, "{tmp}/cur")
def _(d: Data, tmp: Path) -> list[str]:
    text_file(tmp, "cur/readme.txt", "nothing here")
    return run_args(d, tmp, current=tmp / "cur")


@case("glob-matching-nothing", "files", 2, "{tmp}/none-*.parquet")
def _(d: Data, tmp: Path) -> list[str]:
    return run_args(d, tmp, current=f"{tmp}/none-*.parquet")


@case("missing-current", "files", 2, "{tmp}/nowhere.parquet")
def _(d: Data, tmp: Path) -> list[str]:
    return run_args(d, tmp, current=tmp / "nowhere.parquet")


@case("missing-baseline", "files", 2, "{tmp}/nowhere.parquet")
def _(d: Data, tmp: Path) -> list[str]:
    return run_args(d, tmp, baseline=tmp / "nowhere.parquet")


# File names that are glob characters, spaces, unicode or long are read as the file itself.
_ODD_NAMES = {"bracket": "cur[1].parquet", "star": "cur*.parquet", "question": "cur?.parquet",
              "spaces": "my data/cur rent.parquet", "unicode": "données/日本語 ü.parquet",
              "long": "l" * 240 + ".parquet", "leading-dash": "-cur.parquet",
              "hash": "cur#1.parquet", "percent": "cur%20.parquet",
              "colon": "parquet:cur.parquet", "braces": "cur{a,b}.parquet",
              "newline": "cur\nline.parquet"}
for _key, _name in _ODD_NAMES.items():
    def _odd(d: Data, tmp: Path, name: str = _name) -> list[str]:
        path = write(tmp, name, current(d))
        write(tmp, name.replace("cur", "cux"), current(d))  # a decoy a glob would also match
        return run_args(d, tmp, current=path)

    CASES.append(Case(f"file-name-{_key}", "files", _odd, 0, check=n_current_is("x", 2000)))


@case("escaped-glob-bracket", "files", 0, check=n_current_is("x", 2000))
def _(d: Data, tmp: Path) -> list[str]:
    write(tmp, "g/cur[1].parquet", current(d))
    write(tmp, "g/cur1.parquet", current(d))
    return run_args(d, tmp, current=f"{tmp}/g/cur[[]1].parquet")


# Segment columns named like kl-drift's own columns: handled by construction.
for _name in ("status", "kind", "segment", "window", "value", "n_current", "row", "count",
              "feature", "bin", "lifecycle", "run_id", "reason", "__missing__", "segment:x"):
    def _reserved(d: Data, tmp: Path, name: str = _name) -> list[str]:
        base = pl.read_parquet(d.raw).rename({"region": name})
        cur = current(d).rename({"region": name})
        return run_args(d, tmp, "--segment", name, "--fail-on", "never",
                        baseline=write(tmp, "base.parquet", base),
                        current=write(tmp, "cur.parquet", cur))

    def _reserved_check(_d: Data, tmp: Path, name: str = _name) -> None:
        table = drift_table(tmp)
        assert set(table["segment"]) == {f"{name}=EU", f"{name}=US"}, set(table["segment"])
        assert table["n_current"].sum() == 2000 * 3

    CASES.append(Case(f"reserved-segment-name-{_name}", "files", _reserved, 0,
                      check=_reserved_check))


@case("reserved-feature-names", "files", 0)
def _(d: Data, tmp: Path) -> list[str]:
    """Features named like internal columns are features like any other."""
    names = {"x": "status", "c": "segment", "n": "window"}
    return run_args(d, tmp, "--fail-on", "never",
                    baseline=write(tmp, "base.parquet", pl.read_parquet(d.raw).rename(names)),
                    current=write(tmp, "cur.parquet", current(d).rename(names)))


for _kind, _series in (("list", pl.Series("region", [["EU"]] * 2000)),
                       ("struct", pl.Series("region", [{"a": "EU"}] * 2000))):
    def _nested_segment(d: Data, tmp: Path, series: pl.Series = _series) -> list[str]:
        return run_args(d, tmp, "--segment", "region", baseline=d.profile_seg,
                        current=write(tmp, "cur.parquet", current(d, region=series)))

    CASES.append(Case(f"{_kind}-segment-column", "files", _nested_segment, 2,
                      ("{tmp}/cur.parquet", "'region'")))


@case("list-segment-column-profile", "files", 2, "{tmp}/base.parquet", "'region'")
def _(d: Data, tmp: Path) -> list[str]:
    base = pl.read_parquet(d.raw).with_columns(region=pl.concat_list("region"))
    return ["profile", str(write(tmp, "base.parquet", base)), "--segment", "region",
            "--out", str(tmp / "p.parquet"), "-q"]


@case("list-feature-column", "files", 0, check=statuses_are(x="error", c="ok"))
def _(d: Data, tmp: Path) -> list[str]:
    """x became a list column: an error row for x, the others are checked."""
    return run_args(d, tmp, current=write(tmp, "cur.parquet", current(
        d, x=pl.concat_list(pl.col("x")))))


@case("feature-type-changed", "files", 0, check=statuses_are(x="error", c="ok", n="ok"))
def _(d: Data, tmp: Path) -> list[str]:
    return run_args(d, tmp, current=write(tmp, "cur.parquet", current(
        d, x=pl.col("x").cast(pl.String))))


@case("feature-column-missing", "files", 0, check=statuses_are(x="error", c="ok"))
def _(d: Data, tmp: Path) -> list[str]:
    return run_args(d, tmp, current=write(tmp, "cur.parquet", current(d).drop("x")))


@case("every-feature-unusable", "files", 2, "{tmp}/cur.parquet", "'x'")
def _(d: Data, tmp: Path) -> list[str]:
    table = current(d).select("ts", "region", pl.lit("q").alias("other"))
    return run_args(d, tmp, current=write(tmp, "cur.parquet", table))


@case("decimal-bool-categorical-features", "files", 0)
def _(d: Data, tmp: Path) -> list[str]:
    def typed(table: pl.DataFrame) -> pl.DataFrame:
        return table.with_columns(dec=pl.col("x").round(2).cast(pl.Decimal(10, 2)),
                                  flag=pl.col("n") > 4, cat=pl.col("c").cast(pl.Categorical),
                                  day=pl.col("ts").dt.date(), dur=pl.col("ts").diff(),
                                  blob=pl.col("c").cast(pl.Binary))
    return run_args(d, tmp, "--fail-on", "never",
                    baseline=write(tmp, "base.parquet", typed(pl.read_parquet(d.raw))),
                    current=write(tmp, "cur.parquet", typed(current(d))))


@case("reserved-bin-labels-as-values", "files", 0,
      check=statuses_are(c="ok"))
def _(d: Data, tmp: Path) -> list[str]:
    """Category values spelled like the reserved bins are categories of their own."""
    def relabel(table: pl.DataFrame) -> pl.DataFrame:
        return table.with_columns(c=pl.col("c").replace({"a": "__missing__", "b": "__other__"}))
    return run_args(d, tmp, baseline=write(tmp, "base.parquet", relabel(pl.read_parquet(d.raw))),
                    current=write(tmp, "cur.parquet", relabel(current(d))))


# --- extreme numbers: exact results, no warnings on stderr -------------------------------

@case("exact-kl-of-disjoint-bins", "files", 1, check=statuses_are(x="critical"))
def _(d: Data, tmp: Path) -> list[str]:
    """``eps = 0``: KL of a bin the baseline never saw is infinite (stored as inf, written
    as null with a reason in alerts.json), never a numpy warning on stderr."""
    cfg = config(tmp, "[drift]\neps = 0\nmetric = \"kl\"\n[alerts]\nwarn = 0.1\n"
                      "critical = 0.2\n")
    table = hist_cur(x=[0, 0, 0, 1000])
    return run_args(d, tmp, "--config", str(cfg), baseline=write(
        tmp, "base.parquet", pl.read_parquet(d.hist_base).with_columns(
            count=pl.when(pl.col("bin") == "[1, inf)").then(0.0).otherwise("count"))),
        current=write(tmp, "cur.parquet", table))


@case("exact-js-of-disjoint-bins", "files", 1, check=statuses_are(x="critical"))
def _(d: Data, tmp: Path) -> list[str]:
    cfg = config(tmp, "[drift]\neps = 0\n")
    return run_args(d, tmp, "--config", str(cfg), baseline=write(
        tmp, "base.parquet", pl.read_parquet(d.hist_base).with_columns(
            count=pl.when(pl.col("bin") == "[1, inf)").then(0.0).otherwise("count"))),
        current=write(tmp, "cur.parquet", hist_cur(x=[0, 0, 0, 1000])))


@case("huge-histogram-counts", "files", 0, check=statuses_are(x="ok", c="ok"))
def _(d: Data, tmp: Path) -> list[str]:
    """Totals near 2**53: the null is simulated at that size without overflow."""
    scale = pl.col("count") * 2e12
    return run_args(d, tmp, baseline=write(tmp, "base.parquet", pl.read_parquet(
        d.hist_base).with_columns(scale)), current=write(tmp, "cur.parquet", pl.read_parquet(
            d.hist_base).with_columns(scale * 1.5)))


@case("tiny-histogram-counts", "files", 0, check=statuses_are(x="insufficient_data"))
def _(d: Data, tmp: Path) -> list[str]:
    table = pl.read_parquet(d.hist_cur).with_columns(pl.col("count") * 1e-300)
    return run_args(d, tmp, baseline=d.hist_base, current=write(tmp, "cur.parquet", table))


@case("fractional-histogram-counts", "files", 0)
def _(d: Data, tmp: Path) -> list[str]:
    table = pl.read_parquet(d.hist_cur).with_columns(pl.col("count") / 3)
    return run_args(d, tmp, baseline=d.hist_base, current=write(tmp, "cur.parquet", table))


@case("all-zero-current-histogram", "files", 2, "{tmp}/cur.parquet")
def _(d: Data, tmp: Path) -> list[str]:
    table = pl.read_parquet(d.hist_cur).with_columns(pl.col("count") * 0)
    return run_args(d, tmp, baseline=d.hist_base, current=write(tmp, "cur.parquet", table))


@case("one-feature-all-zero", "files", 0, check=statuses_are(x="insufficient_data", c="ok"))
def _(d: Data, tmp: Path) -> list[str]:
    table = pl.read_parquet(d.hist_cur).with_columns(
        count=pl.when(pl.col("feature") == "x").then(0.0).otherwise("count"))
    return run_args(d, tmp, baseline=d.hist_base, current=write(tmp, "cur.parquet", table))


@case("uncalibrated-huge-window", "files", 0)
def _(d: Data, tmp: Path) -> list[str]:
    cfg = config(tmp, "[alerts]\ncalibrated = false\n")
    scale = pl.col("count") * 1e12
    return run_args(d, tmp, "--config", str(cfg), "--fail-on", "never",
                    baseline=write(tmp, "base.parquet", pl.read_parquet(d.hist_base)
                                   .with_columns(scale)),
                    current=write(tmp, "cur.parquet", pl.read_parquet(d.hist_cur)
                                  .with_columns(scale)))


# --- sources that are not local files: named as sources ----------------------------------

@case("database-table-missing", "files", 2, "source 'sqlite:///{tmp}/db.sqlite#nope'")
def _(d: Data, tmp: Path) -> list[str]:
    import sqlite3

    with sqlite3.connect(tmp / "db.sqlite") as connection:
        connection.execute("create table other (x real)")
    return run_args(d, tmp, current=f"sqlite:///{tmp}/db.sqlite#nope")


@case("delta-table-missing", "files", 2, "source 'delta:{tmp}/lake'")
def _(d: Data, tmp: Path) -> list[str]:
    (tmp / "lake").mkdir()
    return run_args(d, tmp, current=f"delta:{tmp}/lake")


@case("iceberg-table-missing", "files", 2, "source 'iceberg:{tmp}/lake'")
def _(d: Data, tmp: Path) -> list[str]:
    (tmp / "lake").mkdir()
    return run_args(d, tmp, current=f"iceberg:{tmp}/lake")


# --- timestamps ---------------------------------------------------------------------------

@case("timestamp-types-differ-across-a-glob", "files", 2, "{tmp}/glob/", "'ts'")
def _(d: Data, tmp: Path) -> list[str]:
    table = current(d)
    write(tmp, "glob/a.parquet", table.head(1000).with_columns(
        pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S")))
    write(tmp, "glob/b.parquet", table.tail(1000))
    return run_args(d, tmp, current=f"{tmp}/glob/*.parquet", windows=True)


@case("timestamp-units-differ-across-a-glob", "files", 0, check=n_current_is("x", 2000))
def _(d: Data, tmp: Path) -> list[str]:
    """One writer stored nanoseconds, another microseconds: the same instants."""
    table = current(d)
    write(tmp, "glob/a.parquet", table.head(1000).with_columns(
        pl.col("ts").cast(pl.Datetime("ns", "UTC"))))
    write(tmp, "glob/b.parquet", table.tail(1000))
    return run_args(d, tmp, current=f"{tmp}/glob/*.parquet", windows=True)


@case("timestamp-naive-and-aware-across-a-glob", "files", 2, "{tmp}/glob/", "'ts'")
def _(d: Data, tmp: Path) -> list[str]:
    table = current(d)
    write(tmp, "glob/a.parquet", table.head(1000).with_columns(
        pl.col("ts").dt.replace_time_zone(None)))
    write(tmp, "glob/b.parquet", table.tail(1000))
    return run_args(d, tmp, current=f"{tmp}/glob/*.parquet", windows=True)


@case("timestamp-bad-iso-text", "files", 2, "{tmp}/cur.parquet", "'ts'")
def _(d: Data, tmp: Path) -> list[str]:
    table = current(d).with_columns(ts=pl.lit("yesterday at noon"))
    return run_args(d, tmp, current=write(tmp, "cur.parquet", table), windows=True)


@case("timestamp-some-bad-iso-text", "files", 2, "{tmp}/cur.parquet", "'ts'")
def _(d: Data, tmp: Path) -> list[str]:
    table = current(d).with_columns(
        ts=pl.when(pl.int_range(pl.len()) == 7).then(pl.lit("2024-13-45T99:00:00"))
        .otherwise(pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S")))
    return run_args(d, tmp, current=write(tmp, "cur.parquet", table), windows=True)


@case("timestamp-iso-text-with-offsets", "files", 0, check=n_current_is("x", 2000))
def _(d: Data, tmp: Path) -> list[str]:
    table = current(d).with_columns(
        ts=pl.col("ts").dt.convert_time_zone("Asia/Kolkata").dt.strftime("%Y-%m-%dT%H:%M:%S%:z"))
    return run_args(d, tmp, current=write(tmp, "cur.parquet", table), windows=True)


@case("timestamp-nulls", "files", 0, check=n_current_is("x", 2000))
def _(d: Data, tmp: Path) -> list[str]:
    table = current(d).with_columns(
        ts=pl.when(pl.int_range(pl.len()) % 10 == 0).then(None).otherwise(pl.col("ts")))
    return run_args(d, tmp, current=write(tmp, "cur.parquet", table), windows=True)


@case("timestamp-as-dates", "files", 0, check=n_current_is("x", 2000))
def _(d: Data, tmp: Path) -> list[str]:
    table = current(d).with_columns(pl.col("ts").dt.date())
    return run_args(d, tmp, current=write(tmp, "cur.parquet", table), windows=True)


@case("timestamp-as-integers", "files", 2, "{tmp}/cur.parquet", "'ts'")
def _(d: Data, tmp: Path) -> list[str]:
    table = current(d).with_columns(pl.col("ts").dt.epoch("s"))
    return run_args(d, tmp, current=write(tmp, "cur.parquet", table), windows=True)


@case("timestamp-column-missing", "files", 2, "'ts'")
def _(d: Data, tmp: Path) -> list[str]:
    return run_args(d, tmp, current=write(tmp, "cur.parquet", current(d).drop("ts")),
                    windows=True)


@case("segment-column-missing", "files", 2, "'region'")
def _(d: Data, tmp: Path) -> list[str]:
    return run_args(d, tmp, "--segment", "region", baseline=d.profile_seg,
                    current=write(tmp, "cur.parquet", current(d).drop("region")))


def _dst_check(labels: list[str]) -> Check:
    def check(_d: Data, tmp: Path) -> None:
        rows = drift_table(tmp).filter(feature="x").sort("window")
        assert rows["window"].to_list() == labels, rows["window"].to_list()
        assert (rows["coverage"] > 0.99).all() and not rows["partial"].any(), rows["coverage"]

    return check


@case("dst-spring-forward-days", "files", 0, check=_dst_check(
    ["2024-03-30T00:00:00+01:00", "2024-03-31T00:00:00+01:00", "2024-04-01T00:00:00+02:00"]))
def _(d: Data, tmp: Path) -> list[str]:
    """Three local days in Berlin, the middle one 23 hours long: three full windows."""
    start = datetime(2024, 3, 29, 23, tzinfo=UTC)
    minutes = int((datetime(2024, 4, 1, 22, tzinfo=UTC) - start).total_seconds() // 60)
    table = current(d, rows=minutes).with_columns(ts=pl.datetime_range(
        start, start + timedelta(minutes=minutes - 1), "1m", eager=True, time_zone="UTC"))
    cfg = config(tmp, "[input]\nwindow_timezone = \"Europe/Berlin\"\n")
    return run_args(d, tmp, "--config", str(cfg), "--fail-on", "never",
                    current=write(tmp, "cur.parquet", table), windows=True)


@case("dst-fall-back-hours", "files", 0, check=_dst_check(
    ["2024-11-03T00:00:00-04:00", "2024-11-03T01:00:00-04:00", "2024-11-03T01:00:00-05:00",
     "2024-11-03T02:00:00-05:00"]))
def _(d: Data, tmp: Path) -> list[str]:
    """The repeated 1 a.m. hour of New York is two windows, not one of 2 hours."""
    start = datetime(2024, 11, 3, 4, tzinfo=UTC)
    table = current(d, rows=240).with_columns(ts=pl.datetime_range(
        start, start + timedelta(minutes=239), "1m", eager=True, time_zone="UTC"))
    cfg = config(tmp, "[input]\nwindow_timezone = \"America/New_York\"\n")
    return run_args(d, tmp, "--config", str(cfg), "--timestamp", "ts", "--period", "1h",
                    "--fail-on", "never", current=write(tmp, "cur.parquet", table))


# --- profiles edited by hand, and tables that are not what they seem -----------------------

for _what, _value in (("negative", -3.0), ("nan", float("nan")), ("inf", float("inf")),
                      ("huge", 1e300), ("null", None)):
    def _edited_count(d: Data, tmp: Path, value: float | None = _value) -> list[str]:
        path = edited_profile(d, tmp, lambda t: t.with_columns(
            count=pl.when(pl.int_range(pl.len()) == 2).then(value).otherwise("count")))
        return run_args(d, tmp, baseline=path)

    CASES.append(Case(f"profile-edited-{_what}-count", "files", _edited_count, 2,
                      ("{tmp}/edited_profile.parquet",)))


@case("profile-edited-edges", "files", 2, "{tmp}/edited_profile.parquet", "'x'")
def _(d: Data, tmp: Path) -> list[str]:
    return run_args(d, tmp, baseline=edited_profile(d, tmp, lambda t: t.with_columns(
        upper=pl.when(pl.int_range(pl.len()) == 2).then(-50.0).otherwise("upper"))))


@case("profile-edited-bin-order", "files", 2, "{tmp}/edited_profile.parquet")
def _(d: Data, tmp: Path) -> list[str]:
    return run_args(d, tmp, baseline=edited_profile(d, tmp, lambda t: t.with_columns(
        bin_index=pl.col("bin_index").reverse().over("feature"))))


@case("profile-edited-dropped-column", "files", 2, "{tmp}/edited_profile.parquet")
def _(d: Data, tmp: Path) -> list[str]:
    return run_args(d, tmp, baseline=edited_profile(d, tmp, lambda t: t.drop("bin_index")))


@case("profile-edited-metadata", "files", 2, "{tmp}/edited_profile.parquet")
def _(d: Data, tmp: Path) -> list[str]:
    return run_args(d, tmp, baseline=edited_profile(
        d, tmp, lambda t: t, lambda meta: {**meta, b"kl_drift.profile": b"{not json"}))


@case("profile-from-the-future", "files", 2, "{tmp}/edited_profile.parquet", "upgrade")
def _(d: Data, tmp: Path) -> list[str]:
    def newer(meta: dict[bytes, bytes]) -> dict[bytes, bytes]:
        data = json.loads(meta[b"kl_drift.profile"])
        return {**meta, b"kl_drift.profile": json.dumps({**data, "schema_version": 99}).encode()}
    return run_args(d, tmp, baseline=edited_profile(d, tmp, lambda t: t, newer))


@case("profile-without-metadata", "files", 2, "{tmp}/edited_profile.parquet")
def _(d: Data, tmp: Path) -> list[str]:
    """The footer stripped: a histogram table with extra columns, against raw rows."""
    return run_args(d, tmp, baseline=edited_profile(d, tmp, lambda t: t, lambda _m: {}))


@case("profile-given-as-current", "files", 2, "profile.parquet", "profile")
def _(d: Data, tmp: Path) -> list[str]:
    return run_args(d, tmp, current=d.profile)


@case("profile-given-as-current-format-histogram", "files", 2, "profile.parquet", "profile")
def _(d: Data, tmp: Path) -> list[str]:
    cfg = config(tmp, "[input]\ncurrent_format = \"histogram\"\n")
    return run_args(d, tmp, "--config", str(cfg), current=d.profile)


@case("raw-rows-that-look-like-a-histogram", "files", 2, "{tmp}/cur.parquet", "current_format")
def _(d: Data, tmp: Path) -> list[str]:
    table = current(d).with_columns(feature=pl.col("c"), bin=pl.col("region"),
                                    count=pl.col("n"))
    return run_args(d, tmp, current=write(tmp, "cur.parquet", table))


@case("raw-baseline-that-looks-like-a-histogram", "files", 2, "{tmp}/base.parquet",
      "baseline_format")
def _(d: Data, tmp: Path) -> list[str]:
    table = pl.read_parquet(d.raw).select(feature="c", bin="region", count="n")
    return run_args(d, tmp, baseline=write(tmp, "base.parquet", table))


@case("raw-rows-declared-raw", "files", 0)
def _(d: Data, tmp: Path) -> list[str]:
    """The same ambiguous rows with the format set: checked as raw rows."""
    def relabel(table: pl.DataFrame) -> pl.DataFrame:
        return table.with_columns(feature=pl.col("c"), bin=pl.col("region"), count=pl.col("n"))
    cfg = config(tmp, "[input]\nbaseline_format = \"raw\"\ncurrent_format = \"raw\"\n")
    return run_args(d, tmp, "--config", str(cfg), "--fail-on", "never",
                    baseline=write(tmp, "base.parquet", relabel(pl.read_parquet(d.raw))),
                    current=write(tmp, "cur.parquet", relabel(current(d))))


@case("csv-garbage-current", "files", 2, "{tmp}/cur.csv")
def _(d: Data, tmp: Path) -> list[str]:
    return run_args(d, tmp, current=text_file(tmp, "cur.csv", 'x,c\n1,"a\n2,b,zz,\x00\n'))


@case("ndjson-garbage-current", "files", 2, "{tmp}/cur.ndjson")
def _(d: Data, tmp: Path) -> list[str]:
    return run_args(d, tmp, current=text_file(tmp, "cur.ndjson", '{"x": 1}\n{"x": \n'))


@case("csv-current", "files", 0, check=n_current_is("x", 2000))
def _(d: Data, tmp: Path) -> list[str]:
    path = tmp / "cur.csv"
    current(d).write_csv(path)
    return run_args(d, tmp, current=path)


@case("unknown-feature-flag", "files", 2, "input.features", "'nope'")
def _(d: Data, tmp: Path) -> list[str]:
    return run_args(d, tmp, "--feature", "nope")


@case("many-segments", "files", 0)
def _(d: Data, tmp: Path) -> list[str]:
    """200 segments, most with too few rows: insufficient_data, never a crash."""
    base = pl.read_parquet(d.raw).with_columns(region=(pl.int_range(pl.len()) % 200)
                                               .cast(pl.String))
    cur = current(d).with_columns(region=(pl.int_range(pl.len()) % 200).cast(pl.String))
    return run_args(d, tmp, "--segment", "region", "--fail-on", "never",
                    baseline=write(tmp, "base.parquet", base),
                    current=write(tmp, "cur.parquet", cur))


# ===========================================================================================
# Hostile configs: each an exit 2 naming the key
# ===========================================================================================

CONFIGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "unknown-section": ("[inputs]\nbaseline = 'a'\n", ("inputs",)),
    "unknown-key": ("[input]\nbaseline_fromat = 'raw'\n", ("input.baseline_fromat",)),
    "typo-key": ("[alerts]\nwran = 0.1\n", ("alerts.wran", "alerts.warn")),
    "bins-as-text": ("[profile]\nbins = 'twenty'\n", ("profile.bins",)),
    "warn-as-text": ("[alerts]\nwarn = 'high'\n", ("alerts.warn",)),
    "features-as-text": ("[input]\nfeatures = 'x'\n", ("input.features",)),
    "features-empty": ("[input]\nfeatures = []\n", ("input.features",)),
    "segments-as-text": ("[input]\nsegments = 'region'\n", ("input.segments",)),
    "segments-twice": ("[input]\nsegments = ['region', 'region']\n", ("input.segments",)),
    "persistence-zero": ("[alerts]\npersistence = 0\n", ("alerts.persistence",)),
    "persistence-float": ("[alerts]\npersistence = 1.5\n", ("alerts.persistence",)),
    "fdr-zero": ("[alerts]\nfdr_q = 0\n", ("alerts.fdr_q",)),
    "fdr-above-one": ("[alerts]\nfdr_q = 1.5\n", ("alerts.fdr_q",)),
    "fdr-nan": ("[alerts]\nfdr_q = nan\n", ("alerts.fdr_q",)),
    "warn-negative": ("[alerts]\nwarn = -0.1\n", ("alerts.warn",)),
    "warn-inf": ("[alerts]\nwarn = inf\n", ("alerts.warn",)),
    "warn-above-critical": ("[alerts]\nwarn = 0.3\ncritical = 0.2\n", ("alerts.warn",)),
    "critical-above-metric-max": ("[alerts]\ncritical = 2.0\n", ("alerts.critical",)),
    "feature-threshold-negative": ("[alerts.features.x]\nwarn = -1\n", ("warn",)),
    "feature-threshold-unknown-key": ("[alerts.features.x]\nwarning = 0.1\n", ("warning",)),
    "bad-glob": ("[alerts.features.\"x[\"]\nwarn = 0.05\n", ("x[", "glob")),
    "null-quantile-one": ("[alerts]\nnull_quantile = 1\n", ("alerts.null_quantile",)),
    "null-draws-few": ("[alerts]\nnull_draws = 10\n", ("alerts.null_draws",)),
    "min-count-zero": ("[alerts]\nmin_count = 0\n", ("alerts.min_count",)),
    "partial-windows-maybe": ("[alerts]\npartial_windows = 'maybe'\n",
                              ("alerts.partial_windows",)),
    "seed-negative": ("[alerts]\nseed = -1\n", ("alerts.seed",)),
    "period-unit": ("[input]\ntimestamp = 'ts'\nperiod = '1x'\n", ("input.period",)),
    "period-zero": ("[input]\ntimestamp = 'ts'\nperiod = '0d'\n", ("input.period",)),
    "period-negative": ("[input]\ntimestamp = 'ts'\nperiod = '-1d'\n", ("input.period",)),
    "period-empty": ("[input]\ntimestamp = 'ts'\nperiod = ''\n", ("input.period",)),
    "period-words": ("[input]\ntimestamp = 'ts'\nperiod = '1 day'\n", ("input.period",)),
    "period-without-timestamp": ("[input]\nperiod = '1d'\n", ("input.period", "timestamp")),
    "timezone-unknown": ("[input]\nwindow_timezone = 'Mars/Olympus'\n",
                         ("input.window_timezone",)),
    "timezone-empty": ("[input]\nwindow_timezone = ''\n", ("input.window_timezone",)),
    "timezone-path": ("[input]\nwindow_timezone = '../../etc/passwd'\n",
                      ("input.window_timezone",)),
    "schedule-timezone": ("[schedule]\ntimezone = 'Nowhere/Land'\n", ("schedule.timezone",)),
    "min-coverage-two": ("[input]\nmin_coverage = 2\n", ("input.min_coverage",)),
    "fail-on-word": ("[output]\nfail_on = 'sometimes'\n", ("output.fail_on", "sometimes")),
    "fail-on-list-unknown": ("[output]\nfail_on = ['critical', 'nope']\n",
                             ("output.fail_on", "nope")),
    "fail-on-number": ("[output]\nfail_on = 3\n", ("output.fail_on",)),
    "fail-on-nested": ("[output]\nfail_on = [['critical']]\n", ("output.fail_on",)),
    "max-alerts-zero": ("[output]\nmax_alerts = 0\n", ("output.max_alerts",)),
    "output-dir-number": ("[output]\ndir = 5\n", ("output.dir",)),
    "run-id-empty": ("[output]\nrun_id = ''\n", ("output.run_id",)),
    "metric-unknown": ("[drift]\nmetric = 'jsd'\n", ("drift.metric", "jsd")),
    "base-three": ("[drift]\nbase = 3\n", ("drift.base",)),
    "eps-negative": ("[drift]\neps = -1\n", ("drift.eps",)),
    "eps-one": ("[drift]\neps = 1\n", ("drift.eps",)),
    "strategy-unknown": ("[profile]\nstrategy = 'magic'\n", ("profile.strategy",)),
    "bins-one": ("[profile]\nbins = 1\n", ("profile.bins",)),
    "bins-huge": ("[profile]\nbins = 1000000000\n", ("profile.bins",)),
    "top-k-zero": ("[profile]\ntop_k = 0\n", ("profile.top_k",)),
    "fixed-edges-unsorted": ("[profile]\nfixed_edges = {x = [3.0, 1.0, 2.0]}\n",
                             ("fixed_edges",)),
    "fixed-edges-nan": ("[profile]\nfixed_edges = {x = [nan, 1.0]}\n", ("fixed_edges",)),
    "executor-unknown": ("[input]\nexecutor = 'spark'\n", ("input.executor",)),
    "executor-dask-without-prefect": ("[input]\nexecutor = 'dask'\n", ("input.executor",)),
    "baseline-format-unknown": ("[input]\nbaseline_format = 'xml'\n",
                                ("input.baseline_format",)),
    "duplicates-unknown": ("[input]\nduplicates = 'keep'\n", ("input.duplicates",)),
    "storage-options-text": ("[input]\nstorage_options = 's3'\n", ("input.storage_options",)),
    "pool-segments-text": ("[input]\npool_segments = 'yes'\n", ("input.pool_segments",)),
    "models-without-outputs": ("[models]\nbaseline = 'a.parquet'\ncurrent = 'b.parquet'\n",
                               ("models",)),
    "prefect-summary-alerts": ("[prefect]\nsummary_alerts = 100000\n",
                               ("prefect.summary_alerts",)),
    "syntax-error": ("[input\nbaseline = \n", ("kl.toml",)),
    "duplicate-key": ("[alerts]\nwarn = 0.1\nwarn = 0.2\n", ("kl.toml",)),
    "not-utf8": ("\udcff", ("kl.toml",)),
}
for _key, (_toml, _names) in CONFIGS.items():
    def _config_case(d: Data, tmp: Path, toml: str = _toml) -> list[str]:
        path = tmp / "kl.toml"
        path.write_bytes(toml.encode("utf-8", "surrogateescape"))
        args = run_args(d, tmp, "--config", str(path))
        for flag in ("--out", "--run-id"):  # a flag would override the key
            if toml.startswith("[output]") and flag[2:].replace("-", "_") in toml:
                del args[args.index(flag):args.index(flag) + 2]
        return args

    CASES.append(Case(f"config-{_key}", "config", _config_case, 2, _names))


@case("config-missing-file", "config", 2, "{tmp}/none.toml")
def _(d: Data, tmp: Path) -> list[str]:
    return run_args(d, tmp, "--config", str(tmp / "none.toml"))


@case("config-is-a-folder", "config", 2, "{tmp}")
def _(d: Data, tmp: Path) -> list[str]:
    return run_args(d, tmp, "--config", str(tmp))


@case("fail-on-flag-unknown", "config", 2, "output.fail_on", "sometimes")
def _(d: Data, tmp: Path) -> list[str]:
    return run_args(d, tmp, "--fail-on", "critical,sometimes")


@case("period-flag-bad", "config", 2, "input.period")
def _(d: Data, tmp: Path) -> list[str]:
    return run_args(d, tmp, "--timestamp", "ts", "--period", "weekly")


@case("metric-flag-unknown", "config", 2, "drift.metric")
def _(d: Data, tmp: Path) -> list[str]:
    return run_args(d, tmp, "--metric", "accuracy")


@case("fail-on-error-flag", "config", 1, check=statuses_are(x="error"))
def _(d: Data, tmp: Path) -> list[str]:
    """``--fail-on error``: a feature that could not be checked fails the run."""
    return run_args(d, tmp, "--fail-on", "error", current=write(tmp, "cur.parquet", current(
        d, x=pl.col("x").cast(pl.String))))


@case("unmatched-threshold-pattern", "config", 0)
def _(d: Data, tmp: Path) -> list[str]:
    """A per-feature pattern matching nothing is a run warning in alerts.json, not an error."""
    return run_args(d, tmp, "--config", str(config(tmp, "[alerts.features.\"dep_*\"]\n"
                                                        "warn = 0.05\n")))


# ===========================================================================================
# Hostile names: rendered in report.html and report.md, always as text
# ===========================================================================================

PAYLOADS = {
    "script": "<script>alert(1)</script>",
    "img-onerror": "\"><img src=x onerror=alert(2)>",
    "svg-onload": "<svg/onload=alert(3)>",
    "markdown-link": "[click](javascript:alert(4))",
    "markdown-image": "![x](http://evil.example/x.png)",
    "table-break": "a | b\n# heading\n| c |",
    "style-break": "</style><script>alert(5)</script>",
    "template": "{{7*7}}${7*7}<%= 7*7 %>",
    "entity": "&lt;b&gt;&amp;",
    "attribute": "' onmouseover='alert(6)' x='",
    "backticks": "`code` **bold** _it_ ~~s~~",
    "bidi": "\u202eevil\u200b<b>",
}


def _names_run(where: str, payload: str) -> Build:
    """A drifting run whose feature name, category, segment value, segment column name or
    run id is the payload."""

    def build(d: Data, tmp: Path) -> list[str]:
        base, cur = pl.read_parquet(d.raw), pl.read_parquet(d.drifted)
        extra: list[str] = []
        if where == "feature":
            base, cur = (t.rename({"x": payload}) for t in (base, cur))
        elif where == "category":
            base, cur = (t.with_columns(c=pl.col("c").replace({"a": payload})) for t in
                         (base, cur))
            cur = cur.with_columns(c=pl.lit(payload))  # the payload bin drives the alert
        elif where == "segment-value":
            base, cur = (t.with_columns(region=pl.col("region").replace({"EU": payload}))
                         for t in (base, cur))
            extra = ["--segment", "region"]
        elif where == "segment-column":
            base, cur = (t.rename({"region": payload}) for t in (base, cur))
            extra = ["--segment", payload]
        args = run_args(d, tmp, *extra, baseline=write(tmp, "base.parquet", base),
                        current=write(tmp, "cur.parquet", cur))
        if where == "run-id":
            args[args.index("--run-id") + 1] = payload
        return args

    return build


def _escaped(payload: str) -> Check:
    def check(_d: Data, tmp: Path) -> None:
        from tests.reliability.page_checks import assert_html_inert, assert_markdown_inert

        (folder,) = [p for p in (tmp / OUT).iterdir() if (p / ALERTS_FILE).is_file()]
        assert_html_inert((folder / "report.html").read_text(), payload)
        assert_markdown_inert((folder / "report.md").read_text(), payload)

    return check


for _where in ("feature", "category", "segment-value", "segment-column", "run-id"):
    for _key, _payload in PAYLOADS.items():
        if _where in ("segment-column", "run-id") and _key not in (
                "script", "img-onerror", "markdown-link", "table-break"):
            continue
        CASES.append(Case(f"names-{_where}-{_key}", "names", _names_run(_where, _payload), 1,
                          check=_escaped(_payload)))


@case("names-histogram-window-label", "names", 1, check=_escaped(PAYLOADS["script"]))
def _(d: Data, tmp: Path) -> list[str]:
    calm = pl.read_parquet(d.hist_cur).with_columns(window=pl.lit("week 1"))
    shifted = hist_cur(x=[10, 100, 400, 490]).with_columns(window=pl.lit(PAYLOADS["script"]))
    return run_args(d, tmp, baseline=d.hist_base,
                    current=write(tmp, "cur.parquet", pl.concat([calm, shifted])))


# ===========================================================================================
# Output locations
# ===========================================================================================

def _file_in_the_way(where: str) -> Build:
    """A file where the run needs the folder ``where`` (below the output folder)."""

    def build(d: Data, tmp: Path) -> list[str]:
        text_file(tmp, where, "a file")
        return run_args(d, tmp)

    return build


for _case_id, _where in {
    "out-is-a-file": OUT,
    "run-folder-is-a-file": f"{OUT}/{RUN}",
    "history-is-a-file": f"{OUT}/history",
    "history-partition-is-a-file": f"{OUT}/history/run_id={RUN}",
    "internal-folder-is-a-file": f"{OUT}/.kl-drift",
    "staging-folder-is-a-file": f"{OUT}/.kl-drift/staging",
    "locks-folder-is-a-file": f"{OUT}/.kl-drift/locks",
}.items():
    case(_case_id, "paths", 2, "{tmp}/" + _where)(_file_in_the_way(_where))


@case("out-below-a-file", "paths", 2, "{tmp}/blocker")
def _(d: Data, tmp: Path) -> list[str]:
    text_file(tmp, "blocker", "a file")
    args = run_args(d, tmp)
    args[args.index("--out") + 1] = str(tmp / "blocker" / "runs")
    return args


@case("run-folder-is-a-symlink", "paths", 2, "{tmp}/out/r")
def _(d: Data, tmp: Path) -> list[str]:
    (tmp / "elsewhere").mkdir()
    (tmp / OUT).mkdir()
    (tmp / OUT / RUN).symlink_to(tmp / "elsewhere")
    return run_args(d, tmp)


@case("out-is-a-dangling-symlink", "paths", 2, "{tmp}/out")
def _(d: Data, tmp: Path) -> list[str]:
    (tmp / OUT).symlink_to(tmp / "gone")
    return run_args(d, tmp)


@case("out-with-spaces-and-unicode", "paths", 1)
def _(d: Data, tmp: Path) -> list[str]:
    args = run_args(d, tmp, current=d.drifted)
    args[args.index("--out") + 1] = str(tmp / OUT / "my runs" / "données")
    return args


@case("run-id-escaping-the-folder", "paths", 1)
def _(d: Data, tmp: Path) -> list[str]:
    args = run_args(d, tmp, current=d.drifted)
    args[args.index("--run-id") + 1] = "../../escape"
    return args


@case("run-id-very-long", "paths", 1)
def _(d: Data, tmp: Path) -> list[str]:
    args = run_args(d, tmp, current=d.drifted)
    args[args.index("--run-id") + 1] = "r" * 5000
    return args


def _twice_check(_d: Data, tmp: Path) -> None:
    """The second run read the first from the history: its alert is ongoing, no warning."""
    (folder,) = [p for p in tmp.glob("out*/") if p.is_dir()]
    document = json.loads((folder / "second" / ALERTS_FILE).read_text())
    assert document["warnings"] == [], document["warnings"]
    assert {a["lifecycle"] for a in document["alerts"]} == {"ongoing"}, document["alerts"]


for _name in ("out[1]", "out*", "out?", "out {a}"):
    def _glob_out(d: Data, tmp: Path, name: str = _name) -> list[str]:
        """An output folder whose path looks like a glob: the history is still read."""
        overrides = {"input.baseline": str(d.profile), "input.current": str(d.drifted),
                     "output.dir": str(tmp / name), "output.run_id": "first"}
        run_drift(load_config(None, overrides))
        args = run_args(d, tmp, current=d.drifted)
        args[args.index("--out") + 1] = str(tmp / name)
        args[args.index("--run-id") + 1] = "second"
        return args

    CASES.append(Case(f"glob-characters-in-out-{_name}", "paths", _glob_out, 1,
                      check=_twice_check))


@case("report-in-glob-named-folder", "report", 0)
def _(d: Data, tmp: Path) -> list[str]:
    overrides = {"input.baseline": str(d.profile), "input.current": str(d.drifted),
                 "output.dir": str(tmp / "out[1]"), "output.run_id": RUN}
    run_drift(load_config(None, overrides))
    return ["report", str(tmp / "out[1]" / RUN), "-q"]


@case("stale-temp-files-and-staging", "paths", 0)
def _(d: Data, tmp: Path) -> list[str]:
    """Left by a killed run (a process id that no longer exists): removed by the next."""
    good_run(d, tmp)
    dead = 2**22 + 17  # above the default pid_max: never a live process
    text_file(tmp, f"{OUT}/{RUN}/.report.html.{dead}.abc.tmp", "half")
    text_file(tmp, f"{OUT}/history/run_id={RUN}/.part.parquet.{dead}.abc.tmp", "half")
    text_file(tmp, f"{OUT}/.kl-drift/staging/{RUN}.{dead}.0123456789ab/drift.parquet", "half")
    return run_args(d, tmp)


@case("junk-in-history-folder", "paths", 0)
def _(d: Data, tmp: Path) -> list[str]:
    text_file(tmp, f"{OUT}/history/README", "notes")
    text_file(tmp, f"{OUT}/history/run_id=x/notes.txt", "notes")
    return run_args(d, tmp)


@case("profile-out-is-a-folder", "paths", 2, "{tmp}/p")
def _(d: Data, tmp: Path) -> list[str]:
    (tmp / "p").mkdir()
    return ["profile", str(d.raw), "--out", str(tmp / "p"), "-q"]


@case("profile-out-below-a-file", "paths", 2, "{tmp}/blocker")
def _(d: Data, tmp: Path) -> list[str]:
    text_file(tmp, "blocker", "a file")
    return ["profile", str(d.raw), "--out", str(tmp / "blocker" / "p.parquet"), "-q"]


# ===========================================================================================
# kl-drift report of corrupt run folders and histories
# ===========================================================================================

def _report(corrupt: Callable[[Path], object]) -> Build:
    def build(d: Data, tmp: Path) -> list[str]:
        folder = good_run(d, tmp)
        corrupt(folder)
        return ["report", str(folder), "-q"]

    return build


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _rewrite_json(path: Path, edit: Callable[[dict], object]) -> None:
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))


REPORTS: dict[str, tuple[Callable[[Path], object], int, tuple[str, ...]]] = {
    "folder-missing": (lambda f: os.rename(f, f.with_name("moved")), 2, ("{tmp}/out/r",)),
    "folder-is-a-file": (lambda f: (os.rename(f, f.with_name("moved")), f.write_text("x")), 2,
                         ("{tmp}/out/r",)),
    "alerts-missing": (lambda f: (f / ALERTS_FILE).unlink(), 2, ("alerts.json",)),
    "alerts-not-json": (lambda f: (f / ALERTS_FILE).write_text("{\"run\": "), 2,
                        ("alerts.json", "JSON")),
    "alerts-binary": (lambda f: (f / ALERTS_FILE).write_bytes(b"\xff\xfe\x00"), 2,
                      ("alerts.json",)),
    "alerts-wrong-schema": (lambda f: _rewrite_json(f / ALERTS_FILE, lambda d: d.pop("summary")),
                            2, ("alerts.json", "summary")),
    "alerts-bad-created-at": (lambda f: _rewrite_json(
        f / ALERTS_FILE, lambda d: d["run"].update(created_at="last tuesday")), 2,
        ("alerts.json", "created_at")),
    "alerts-is-a-folder": (lambda f: ((f / ALERTS_FILE).unlink(), (f / ALERTS_FILE).mkdir()),
                           2, ("alerts.json",)),
    "drift-truncated": (lambda f: _truncate(f / DRIFT_FILE), 2, ("drift.parquet",)),
    "drift-missing": (lambda f: (f / DRIFT_FILE).unlink(), 2, ("drift.parquet",)),
    "drift-missing-column": (lambda f: pl.read_parquet(f / DRIFT_FILE).drop("status")
                             .write_parquet(f / DRIFT_FILE), 2, ("drift.parquet", "status")),
    "drift-wrong-type": (lambda f: pl.read_parquet(f / DRIFT_FILE).with_columns(
        value=pl.col("value").cast(pl.String)).write_parquet(f / DRIFT_FILE), 2,
        ("drift.parquet", "value")),
    "drift-corrupt-pages": (lambda f: scramble(f / DRIFT_FILE), 2, ("drift.parquet",)),
    "report-html-is-a-folder": (lambda f: ((f / "report.html").unlink(),
                                           (f / "report.html").mkdir()), 2,
                                ("report.html",)),
}


for _key, (_corrupt, _exit, _names) in REPORTS.items():
    CASES.append(Case(f"report-{_key}", "report", _report(_corrupt), _exit, _names,
                      whole=False))


# A history partition that cannot be read: skipped with a warning naming it, by the next run
# and by ``kl-drift report``.
HISTORY_DAMAGE: dict[str, Callable[[Path], object]] = {
    "garbage": lambda p: p.write_bytes(b"garbage"),
    "empty": lambda p: p.write_bytes(b""),
    "truncated": _truncate,
    "corrupt-pages": scramble,
    "wrong-types": lambda p: pl.read_parquet(p).with_columns(
        feature=pl.lit(1), created_at=pl.lit("soon")).write_parquet(p),
    "missing-columns": lambda p: pl.read_parquet(p).select("run_id", "created_at")
    .write_parquet(p),
    "a-folder": lambda p: (p.unlink(), p.mkdir()),
}


def _damaged_history(rerun: bool, damage: Callable[[Path], object]) -> Build:
    """An earlier run ``old`` whose history partition is damaged; then a run ``r`` (or
    ``kl-drift report`` of the run ``r`` written before the damage)."""

    def build(d: Data, tmp: Path) -> list[str]:
        overrides = {"input.baseline": str(d.profile), "input.current": str(d.drifted),
                     "output.dir": str(tmp / OUT)}
        for run_id in ("old", RUN):
            run_drift(load_config(None, {**overrides, "output.run_id": run_id}))
        damage(tmp / OUT / "history" / "run_id=old" / "part.parquet")
        if rerun:
            return run_args(d, tmp, current=d.drifted)
        return ["report", str(tmp / OUT / RUN), "-q"]

    return build


def _warned_in_alerts(_d: Data, tmp: Path) -> None:
    warnings = alerts(tmp)["warnings"]
    assert any("run_id=old" in w and "skipped" in w for w in warnings), warnings


for _key, _damage in HISTORY_DAMAGE.items():
    CASES.append(Case(f"history-{_key}-next-run", "report", _damaged_history(True, _damage), 1,
                      check=_warned_in_alerts))
    CASES.append(Case(f"history-{_key}-report", "report", _damaged_history(False, _damage), 0,
                      warns=("history/run_id=old/part.parquet",)))


# ===========================================================================================
# Model outputs and KL estimates
# ===========================================================================================

def _model_outputs(tmp: Path, shift: float = 0.0, rows: int = 600, **columns: object
                   ) -> tuple[Path, Path]:
    """Two models' logits over the same ids (the second shifted), with columns replaced."""
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 1, (rows, 3))
    tables = []
    for name, delta in (("v1", 0.0), ("v2", shift)):
        table = pl.DataFrame({"id": np.arange(rows),
                              "logits": (logits + delta * np.array([1, 0, -1])).tolist()})
        tables.append(write(tmp, f"{name}.parquet", table.with_columns(
            **{k: v for k, v in columns.items() if name == "v2"})))
    return tables[0], tables[1]


def _models_args(tmp: Path, baseline: Path, current: Path, *extra: str) -> list[str]:
    return ["models", "--baseline", str(baseline), "--current", str(current), "--id", "id",
            "--outputs", "logits", "--out", str(tmp / OUT), "--run-id", RUN, "-q", *extra]


MODEL_CASES: dict[str, tuple[dict[str, object], tuple[str, ...], int, tuple[str, ...]]] = {
    "ok": ({}, (), 0, ()),
    "shifted": ({}, ("--fail-on", "warn"), 1, ()),
    "nan-logits": ({"logits": pl.lit([float("nan"), 0.0, 1.0])}, (), 2, ("'logits'",)),
    "inf-logits": ({"logits": pl.lit([float("inf"), 0.0, 1.0])}, (), 2, ("'logits'",)),
    "short-vectors": ({"logits": pl.lit([0.0, 1.0])}, (), 2, ("'logits'",)),
    "text-outputs": ({"logits": pl.lit("0.1,0.2")}, (), 2, ("'logits'",)),
    "null-vectors": ({"logits": pl.lit(None, pl.List(pl.Float64))}, (), 2, ("'logits'",)),
    "duplicate-ids": ({"id": pl.lit(3)}, (), 2, ("'id'",)),
    "no-shared-ids": ({"id": pl.col("id") + 10_000}, (), 2, ("id",)),
    "missing-id": ({"other": pl.col("id")}, ("--id", "nope"), 2, ("'nope'",)),
    "probabilities-not-summing": ({}, ("--kind", "probabilities"), 2, ("'logits'",)),
    "class-names-mismatch": ({}, ("--class-name", "a", "--class-name", "b"), 2,
                             ("class",)),
}
for _key, (_columns, _extra, _exit, _names) in MODEL_CASES.items():
    def _models_case(d: Data, tmp: Path, columns: dict[str, object] = _columns,
                     extra: tuple[str, ...] = _extra, key: str = _key) -> list[str]:
        baseline, current = _model_outputs(tmp, shift=1.0 if key == "shifted" else 0.0,
                                           **columns)
        return _models_args(tmp, baseline, current, *extra)

    CASES.append(Case(f"models-{_key}", "models", _models_case, _exit, _names))


def _samples(tmp: Path, **columns: object) -> Path:
    rng = np.random.default_rng(6)
    logq = -rng.exponential(1.0, 500)
    table = pl.DataFrame({"logq": logq, "logp": logq - rng.exponential(0.1, 500)})
    return write(tmp, "samples.parquet", table.with_columns(**columns))


ESTIMATE_CASES: dict[str, tuple[dict[str, object], int, tuple[str, ...]]] = {
    "ok": ({}, 0, ()),
    "text-logq": ({"logq": pl.col("logq").cast(pl.String)}, 2, ("'logq'",)),
    "nan-logp": ({"logp": pl.when(pl.int_range(pl.len()) == 3).then(float("nan"))
                  .otherwise("logp")}, 2, ("'logp'",)),
    "positive-log-probabilities": ({"logp": pl.col("logp") + 5}, 2, ("'logp'",)),
    "missing-column": ({"logp": pl.lit(None, pl.Float64)}, 2, ("'logp'",)),
}
for _key, (_columns, _exit, _names) in ESTIMATE_CASES.items():
    def _estimate_case(d: Data, tmp: Path, columns: dict[str, object] = _columns
                       ) -> list[str]:
        return ["estimate", str(_samples(tmp, **columns)), "--out", str(tmp / OUT),
                "--run-id", RUN, "-q"]

    CASES.append(Case(f"estimate-{_key}", "models", _estimate_case, _exit, _names))


@case("estimate-empty-table", "models", 2, "{tmp}/samples.parquet")
def _(d: Data, tmp: Path) -> list[str]:
    path = write(tmp, "samples.parquet", pl.read_parquet(_samples(tmp)).head(0))
    return ["estimate", str(path), "--out", str(tmp / OUT), "--run-id", RUN, "-q"]


# ===========================================================================================
# Injected bugs: the only cases where exit 3 is right
# ===========================================================================================

for _target in ("pipeline.reference_modes.compute_drift", "pipeline.run.write_reports",
                "pipeline.run.stage_history", "pipeline.run.read_profile"):
    CASES.append(Case(f"injected-bug-{_target.rsplit('.', 1)[1]}", "bugs",
                      lambda d, tmp: run_args(d, tmp), 3, bug=_target))
