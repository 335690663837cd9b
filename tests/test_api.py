"""The Python API (docs/python-api.md): profile and check in-memory tables in a few lines, the
result object, its inline report and its run folder, the same as a path-based run."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
import tomllib
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import pipeline as kd
from pipeline.config import load_config
from pipeline.errors import ConfigError, InputError
from pipeline.run import run_drift

ROOT = Path(__file__).parents[1]
START = datetime(2024, 6, 3)  # a Monday: two whole weekly windows


def tables(seed: int = 7) -> tuple[pl.DataFrame, pl.DataFrame]:
    """January-like baseline rows and two weeks of current rows whose ``x`` shifts by one
    standard deviation in the second week; ``color`` keeps its distribution."""
    rng = np.random.default_rng(seed)

    def rows(n: int, start: datetime, span: timedelta, shift: np.ndarray | float
             ) -> pl.DataFrame:
        offsets = np.sort(rng.uniform(0, span.total_seconds(), n))
        return pl.DataFrame({
            "ts": [start + timedelta(seconds=float(s)) for s in offsets],
            "x": rng.normal(0.0, 1.0, n) + shift,
            "color": rng.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2]),
        })

    baseline = rows(4000, datetime(2024, 1, 1), timedelta(days=28), 0.0)
    week = timedelta(days=7)
    current = rows(6000, START, 2 * week, 0.0)
    current = current.with_columns(x=pl.when(pl.col("ts") >= START + week)
                                   .then(pl.col("x") + 1.0).otherwise("x"))
    return baseline, current


@pytest.fixture(scope="module")
def data() -> tuple[pl.DataFrame, pl.DataFrame]:
    return tables()


@pytest.fixture(scope="module")
def checked(data):
    baseline, current = data
    profile = kd.profile(baseline)
    return kd.check(current, profile, timestamp="ts", period="1w")


def srcdoc(frame: str) -> str:
    """The page inside the iframe that ``_repr_html_`` returns."""
    match = re.fullmatch(r'<iframe srcdoc="([^"]*)" sandbox="allow-scripts".*</iframe>', frame,
                         flags=re.DOTALL)
    assert match, frame[:200]
    return html.unescape(match.group(1))


def test_a_notebook_profiles_checks_and_shows_the_report_in_a_few_lines(data) -> None:
    baseline, current = data
    profile = kd.profile(baseline)
    result = kd.check(current, profile, timestamp="ts", period="1w")
    page = srcdoc(result._repr_html_())

    verdicts = {(row["feature"], row["window"]): row["status"]
                for row in result.drift.iter_rows(named=True)}
    first, second = "2024-06-03T00:00:00", "2024-06-10T00:00:00"
    assert verdicts == {("x", first): "ok", ("x", second): "critical",
                        ("color", first): "ok", ("color", second): "ok"}
    assert "1 of 2 features drifted" in re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", page))
    assert '<td class="feature"><a href="#f0">x</a></td>' in page
    assert ">color<" in page
    assert page == result.report_html()
    assert result.alerts["run"]["inputs"] == {
        "baseline": "profile of baseline polars DataFrame (4,000 rows)",
        "current": "current polars DataFrame (6,000 rows)"}
    assert result.exit_code == 1 and result.worst_status == "critical"


def test_in_memory_check_equals_the_path_based_run(data, checked, tmp_path: Path) -> None:
    baseline, current = data
    baseline.write_parquet(tmp_path / "baseline.parquet")
    current.write_parquet(tmp_path / "current.parquet")
    run = run_drift(load_config(None, {
        "input.baseline": str(tmp_path / "baseline.parquet"),
        "input.current": str(tmp_path / "current.parquet"), "input.timestamp": "ts",
        "input.period": "1w", "output.dir": str(tmp_path / "runs")}))
    assert checked.drift.equals(run.drift)
    # the document differs only where it names the run and its inputs
    for key in ("summary", "alerts", "problems", "changes", "warnings"):
        assert checked.alerts[key] == run.alerts[key], key


def test_pandas_and_pyarrow_tables_give_the_same_result(data, checked) -> None:
    pd = pytest.importorskip("pandas")
    baseline, current = data
    # a DatetimeIndex is a column for kl-drift (pandas users keep timestamps there)
    indexed = current.to_pandas().set_index("ts")
    assert isinstance(indexed, pd.DataFrame) and "ts" not in indexed.columns
    from_pandas = kd.check(indexed, baseline.to_pandas(), timestamp="ts", period="1w")
    from_arrow = kd.check(current.to_arrow(), baseline.to_arrow(), timestamp="ts",
                          period="1w")
    assert from_pandas.drift.equals(checked.drift)
    assert from_arrow.drift.equals(checked.drift)
    assert from_pandas.alerts["run"]["inputs"]["current"] == (
        "current pandas DataFrame (6,000 rows)")


def test_sources_and_lazy_frames_work_like_tables(data, checked, tmp_path: Path) -> None:
    baseline, current = data
    baseline.write_parquet(tmp_path / "baseline.parquet")
    profile = kd.profile(str(tmp_path / "baseline.parquet"))
    assert profile.table.equals(kd.profile(baseline).table)
    lazy = kd.check(current.lazy(), str(tmp_path / "baseline.parquet"), timestamp="ts",
                    period="1w")
    assert lazy.drift.equals(checked.drift)
    assert lazy.alerts["run"]["inputs"]["current"] == "current polars LazyFrame"


def test_write_publishes_the_run_folder_a_run_writes(checked, data, tmp_path: Path) -> None:
    written = checked.write(tmp_path / "runs" / "week-24")
    assert written.run_id == "week-24" and written.run_dir == tmp_path / "runs" / "week-24"
    assert sorted(p.name for p in written.run_dir.iterdir()) == [
        "alerts.json", "drift.parquet", "report.html", "report.md", "resolved.parquet"]
    assert pl.read_parquet(written.run_dir / "drift.parquet").equals(written.drift)
    # the inline report and report.html are one page, history plots included
    assert written.history_dir == tmp_path / "runs" / "history"
    assert (written.run_dir / "report.html").read_text() == written.report_html()
    # a later check of the same drift, written next to it, continues its episode: the
    # decisions across runs are made against the folder's history when writing
    baseline, current = data
    later = kd.check(current.filter(pl.col("ts") >= START + timedelta(days=7)), baseline,
                     timestamp="ts", period="1w")
    assert later.drift.filter(pl.col("feature") == "x")["lifecycle"].to_list() == ["new"]
    again = later.write(tmp_path / "runs" / "week-25")
    assert again.drift.filter(pl.col("feature") == "x")["lifecycle"].to_list() == ["ongoing"]
    assert again.alerts["changes"] == {"new": 0, "ongoing": 1, "resolved": 0}


def test_write_without_a_folder_uses_the_config_and_names_bad_folders(data, tmp_path) -> None:
    baseline, current = data
    result = kd.check(current, baseline, timestamp="ts", period="1w", run_id="r/1",
                      dir=str(tmp_path / "out"))
    written = result.write()
    assert written.run_id == "r/1" and written.run_dir.parent == tmp_path / "out"
    assert written.run_dir.name.startswith("r_1-")  # safe_filename of the run id
    with pytest.raises(ConfigError, match="'history' cannot be one"):
        result.write(tmp_path / "out" / "history")


def test_write_without_a_folder_claims_a_free_automatic_id(data, tmp_path: Path) -> None:
    # checks of one second share its automatic id until written: each write publishes a run
    # of its own, as each `kl-drift run` does, instead of replacing the one written before
    baseline, current = data
    out = tmp_path / "out"
    result = kd.check(current, baseline, timestamp="ts", period="1w", dir=str(out))
    first, second = result.write(), result.write()
    assert first.run_id == result.run_id and second.run_id == f"{result.run_id}-2"
    for written in (first, second):
        assert written.run_dir == out / written.run_id
        assert json.loads((written.run_dir / "alerts.json").read_text())["run"]["run_id"] \
            == written.run_id
    assert sorted(p.name for p in (out / "history").iterdir() if p.is_dir()) == [
        f"run_id={first.run_id}", f"run_id={second.run_id}"]
    # a given id is a rerun: written again into the same folder
    named = kd.check(current, baseline, timestamp="ts", period="1w", dir=str(out),
                     run_id="nightly")
    assert named.write().run_dir == named.write().run_dir == out / "nightly"


def test_options_are_config_keys_bare_dotted_or_by_section(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('[alerts]\nwarn = 0.05\ncritical = 0.3\n[profile]\nbins = 7\n')
    from pipeline.api import _settings

    merged = _settings(config, timestamp="ts", period="1d", metric="psi",
                       alerts={"critical": 0.4}, **{"output.max_alerts": 5})
    assert (merged.input.timestamp, merged.input.period, merged.drift.metric) == (
        "ts", "1d", "psi")
    assert (merged.alerts.warn, merged.alerts.critical, merged.profile.bins) == (0.05, 0.4, 7)
    assert merged.output.max_alerts == 5
    # a RunConfig object: a section dict merges into its section, it does not replace it
    on_object = _settings(merged, alerts={"warn": 0.01})
    assert (on_object.alerts.warn, on_object.alerts.critical, on_object.profile.bins) == (
        0.01, 0.4, 7)
    assert _settings(features=["x"]).input.features == ["x"]  # not alerts.features
    with pytest.raises(ConfigError, match="unknown option 'wran'"):
        _settings(wran=0.1)
    with pytest.raises(ConfigError, match=r"alerts\.warn: must be < alerts\.critical"):
        _settings(warn=0.5)


def test_bad_input_is_a_one_line_error_naming_the_table(data) -> None:
    baseline, current = data
    with pytest.raises(InputError, match=r"current polars DataFrame \(6,000 rows\).*'when'"):
        kd.check(current, baseline, timestamp="when", period="1w")
    with pytest.raises(ConfigError, match="'y' is in neither the baseline nor the current "
                       "data, whose features are color, x"):
        kd.check(current, kd.profile(baseline), features=["y"])
    with pytest.raises(InputError, match=r"baseline lacks feature column.*y; found ts, x"):
        kd.check(current, baseline, features=["y"])  # profiled first: named there
    with pytest.raises(TypeError, match="current: expected a polars or pandas DataFrame"):
        kd.check([1, 2, 3], baseline)
    with pytest.raises(ConfigError, match=r"input\.baseline: required"):
        kd.check(current)
    # histogram tables in memory too, told apart from raw rows by their columns
    bins = {"feature": ["a", "a", "b", "b"], "bin": ["p", "q", "p", "q"]}
    empty = pl.DataFrame({**bins, "count": [0.0, 0.0, 0.0, 0.0]})
    with pytest.raises(InputError, match="nothing could be compared: all 2 rows are errors "
                       r"\(first: baseline histogram is empty.*alerts\['problems'\] lists them"):
        kd.check(pl.DataFrame({**bins, "count": [5.0, 5.0, 1.0, 1.0]}), empty)


def test_config_sections_beyond_features_run_too(tmp_path: Path) -> None:
    data = ROOT / "data"
    result = kd.check(config=data / "demo.toml", **{"input.baseline": str(
        data / "flights_baseline.parquet")})
    assert result.models is not None and result.estimates is not None
    page = result.report_html()
    assert "Model outputs" in page and "Estimates" in page


def test_importing_pipeline_stays_cheap_and_the_package_is_typed() -> None:
    probe = ("import sys, pipeline; heavy = {'polars', 'numpy', 'pipeline.run', 'jinja2'} "
             "& set(sys.modules); print(sorted(heavy), pipeline.check.__module__)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.split("]")[0] == "["  # nothing heavy before first use
    assert out.stdout.strip().endswith("pipeline.api")
    for package in ("pipeline", "kl_metrics"):
        assert resources.files(package).joinpath("py.typed").is_file()
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "py.typed" in data["package-data"]["pipeline"]
    assert "py.typed" in data["package-data"]["kl_metrics"]
    assert sorted(kd.__all__) == sorted(name for name in kd.__all__ if getattr(kd, name))


def test_the_tour_in_docs_python_api_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    text = (ROOT / "docs" / "python-api.md").read_text(encoding="utf-8")
    (snippet,) = re.findall(r"^```python\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)
    (tmp_path / "data").symlink_to(ROOT / "data", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    names: dict[str, object] = {}
    exec(compile(snippet, "docs/python-api.md", "exec"), names)  # our own docs, not input
    result, written = names["result"], names["written"]
    assert isinstance(result, kd.CheckResult) and isinstance(written, kd.RunResult)
    assert written.run_dir == Path("runs/july") and (tmp_path / "runs/july/report.html").is_file()
    assert set(result.drift["segment"].unique()) == {"origin=EWR", "origin=JFK", "origin=LGA"}
