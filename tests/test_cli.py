"""The kl-drift CLI: commands, exit codes (0 ok, 1 alerts, 2 bad input), output modes."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from flows.cli import app

DATA = Path(__file__).parents[1] / "data"
COMMANDS = ("demo", "profile", "run", "models", "estimate", "validate", "report", "serve")
WINDOWS = ["--timestamp", "scheduled_departure", "--period", "1w", "--segment", "origin"]


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_error_line(result) -> str:
    """The whole stderr of a failed command: exactly one line, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def profile_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "profile.parquet"
    result = invoke("profile", DATA / "flights_baseline.parquet", "--out", path,
                    "--exclude", "flight_id", "--exclude", "scheduled_departure",
                    "--segment", "origin")
    assert result.exit_code == 0, result.output
    assert "7 features" in result.stdout
    return path


def test_help_lists_every_command_and_imports_nothing_heavy() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    assert all(command in result.stdout for command in COMMANDS)
    # --help must stay fast: the module imports neither polars, the pipeline nor Prefect.
    probe = ("import sys, flows.cli; heavy = {'polars', 'prefect', 'pipeline.run', 'numpy'} "
             "& set(sys.modules); print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=DATA.parent)
    assert out.stdout.strip() == "[]"


def test_a_run_imports_only_what_it_uses(profile_path: Path, tmp_path: Path) -> None:
    # Start-up counts for small scheduled runs: a profile against raw rows needs no pandas
    # (pyarrow only for the drift table's bin lists, never pyarrow's pandas-importing paths:
    # 0.2 s, nor pyarrow.compute: 0.045 s), Prefect, databases, model outputs or estimates; without
    # [export.prometheus] no prometheus_client; a quiet run prints nothing, so no rich; a
    # typer with its own click never loads click (older typers do); no scipy: the G-test's
    # chi-square tail and the Monte Carlo bound are numpy (kl_metrics.special,
    # significance.floor_at_most: 0.15 s); no numpy.random while every p-value is a closed
    # form (the permutation draws are seeded on first use); no tomllib without a config
    # file. Each of these costs 3-150 ms of every run.
    args = ["kl-drift", "run", "--baseline", str(profile_path), "--current",
            str(DATA / "flights_current.parquet"), *WINDOWS, "--out", str(tmp_path), "-q",
            "--fail-on", "never"]
    unused = ["pandas", "pyarrow.compute", "prefect", "sqlalchemy", "duckdb", "matplotlib",
              "pipeline.measure.models", "pipeline.measure.estimate", "pipeline.bins.pushdown",
              "prometheus_client", "rich", "scipy", "numpy.f2py", "numpy.testing",
              "numpy.random", "tomllib", "unittest",
              *([] if typer.Exit.__module__.startswith("click") else ["click"])]
    probe = (f"import sys; sys.argv = {args!r}\nfrom flows.cli import app\n"
             "try:\n    app()\nexcept SystemExit as end:\n    assert not end.code, end.code\n"
             f"print(sorted(set({unused!r}) & set(sys.modules)), 'jinja2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=DATA.parent)
    assert out.stdout.split("\n")[-2] == "[] True"  # reports written: their modules loaded


def test_the_program_leaves_its_objects_to_the_os_and_test_runners_alone() -> None:
    # `kl-drift` ends its process: its objects are frozen so that interpreter teardown does
    # not free them one by one (0.1 s); commands invoked in-process freeze nothing.
    probe = ("import atexit, gc, sys\n"
             "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0))\n"
             "sys.argv = ['kl-drift', '--version']\nfrom flows.cli import app\napp()")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=DATA.parent)
    assert out.stdout.split("\n")[-2] == "frozen True"
    before = gc.get_freeze_count()
    assert invoke("--version").exit_code == 0
    assert gc.get_freeze_count() == before


def test_a_commands_imports_are_frozen_with_the_collector_back_on(tmp_path: Path) -> None:
    # the collector is off while `kl-drift profile` imports the pipeline (0.03 s of
    # traversals), and on again for the build: what was imported is frozen by then; a
    # command invoked in-process changes neither
    probe = ("import atexit, gc, sys\n"
             "import pipeline.bins.profile as profile\n"
             "build = profile.build_profile\n"
             "def probe(*args, **kwargs):\n"
             "    print('building', gc.isenabled(), gc.get_freeze_count() > 10_000)\n"
             "    return build(*args, **kwargs)\n"
             "profile.build_profile = probe\n"
             f"sys.argv = ['kl-drift', 'profile', {str(DATA / 'flights_baseline.parquet')!r},"
             f" '--out', {str(tmp_path / 'p.parquet')!r}, '-q']\n"
             "from flows.cli import app\napp()")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=DATA.parent)
    assert out.stdout.split("\n")[-2] == "building True True", out.stderr
    before = gc.get_freeze_count()
    assert invoke("profile", DATA / "flights_baseline.parquet", "--out",
                  tmp_path / "q.parquet", "-q").exit_code == 0
    assert gc.get_freeze_count() == before and gc.isenabled()


@pytest.mark.parametrize(("variable", "default", "other"), [
    # pydantic reads every distribution's entry points to find plugins (0.015 s)
    ("PYDANTIC_DISABLE_PLUGINS", "__all__", "logfire"),
    # OpenBLAS's idle threads busy-wait 2^28 cycles at start-up (0.06 s of CPU)
    ("OPENBLAS_THREAD_TIMEOUT", "4", "28"),
])
def test_the_program_sets_start_up_variables_unless_given(variable: str, default: str,
                                                          other: str) -> None:
    # the program sets them unless the variable is set, and commands invoked in-process
    # leave the environment alone
    probe = ("import os, sys\nsys.argv = ['kl-drift', '--version']\nfrom flows.cli import app\n"
             "try:\n    app()\nexcept SystemExit:\n    pass\n"
             f"print(repr(os.environ.get({variable!r})))")
    for given, expected in ((None, repr(default)), ("", "''"), (other, repr(other))):
        env = {k: v for k, v in os.environ.items() if k != variable}
        if given is not None:
            env[variable] = given
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                             check=True, cwd=DATA.parent, env=env)
        assert out.stdout.split("\n")[-2] == expected
    before = os.environ.get(variable)
    assert invoke("--version").exit_code == 0
    assert os.environ.get(variable) == before


_ARENAS_PROBE = """\
import ctypes, os, sys, tempfile, threading
import numpy as np
sys.argv = ['kl-drift', '--version']
from flows.cli import app
try:
    app()
except SystemExit:
    pass
# eight threads alive at once, each allocating from malloc (below its mmap threshold)
barrier = threading.Barrier(8)
def allocate():
    barrier.wait()
    kept = [np.ones(4096) for _ in range(20)]
    barrier.wait()
workers = [threading.Thread(target=allocate) for _ in range(8)]
for worker in workers: worker.start()
for worker in workers: worker.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
path = os.path.join(tempfile.mkdtemp(), 'info.xml')
stream = libc.fopen(path.encode(), b'w')
libc.malloc_info(0, stream)
libc.fclose(stream)
print(os.environ.get('MALLOC_ARENA_MAX'), open(path).read().count('<heap nr='))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc arenas")
@pytest.mark.parametrize(("variables", "most"), [
    # one arena per thread of the run (POLARS_MAX_THREADS, else the cores it may use)
    ({"POLARS_MAX_THREADS": "2"}, 2),
    ({"POLARS_MAX_THREADS": "1"}, 1),
    # an explicit setting wins
    ({"POLARS_MAX_THREADS": "2", "MALLOC_ARENA_MAX": "5"}, 5),
])
def test_the_program_bounds_malloc_arenas_by_its_threads(variables: dict[str, str],
                                                        most: int) -> None:
    # threads allocating side by side would each get a glibc arena (up to 8 per core) that
    # keeps what they free: 250-300 MiB more at the peak of the 500,000-row run
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | variables
    out = subprocess.run([sys.executable, "-c", _ARENAS_PROBE], capture_output=True,
                         text=True, check=True, cwd=DATA.parent, env=env)
    # the limit, and the variable the processes it starts (flow runs of `serve`) inherit
    assert out.stdout.split("\n")[-2] == f"{most} {most}"
    # without the program, the same threads make an arena each
    unbounded = _ARENAS_PROBE.replace("    app()", "    pass")
    out = subprocess.run([sys.executable, "-c", unbounded], capture_output=True, text=True,
                         check=True, cwd=DATA.parent, env=env | {"MALLOC_ARENA_MAX": "64"})
    assert int(out.stdout.split("\n")[-2].split()[1]) >= 8


def test_openblas_threads_sleep_at_once_with_the_programs_timeout() -> None:
    # what the variable is for: importing numpy costs no CPU in other threads with it
    # (0.06 s without it, on 2 cores)
    probe = ("import time\nstart = time.process_time() - time.thread_time()\nimport numpy\n"
             "print(time.process_time() - time.thread_time() - start)")
    env = os.environ | {"OPENBLAS_THREAD_TIMEOUT": "4"}
    assert min(float(subprocess.run([sys.executable, "-c", probe], capture_output=True,
                                    text=True, check=True, env=env).stdout)
               for _ in range(3)) < 0.01


def test_profiling_imports_no_drift_alert_or_report_code(tmp_path: Path) -> None:
    # `kl-drift profile` builds and writes a profile: measures, the alert decision (scipy)
    # and the report writers are not needed, and cost a second of start-up on a busy machine
    # (pyarrow is: it writes the metadata where pyarrow's reader finds it)
    args = ["kl-drift", "profile", str(DATA / "flights_baseline.parquet"), "--exclude",
            "flight_id", "--out", str(tmp_path / "p.parquet"), "-q"]
    unused = ["pipeline.run", "pipeline.measure.drift", "pipeline.decide.alerts",
              "pipeline.write.reports", "scipy", "matplotlib", "tomllib"]
    probe = (f"import sys; sys.argv = {args!r}\nfrom flows.cli import app\n"
             "try:\n    app()\nexcept SystemExit as end:\n    assert not end.code, end.code\n"
             f"print(sorted(set({unused!r}) & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=DATA.parent)
    assert out.stdout.split("\n")[-2] == "[]"
    assert (tmp_path / "p.parquet").exists()


def test_run_exit_code_follows_fail_on(profile_path: Path, tmp_path: Path) -> None:
    common = ["run", "--baseline", profile_path, "--current", DATA / "flights_current.parquet",
              *WINDOWS, "--out", tmp_path, "--run-id", "r1"]
    alerting = invoke(*common, "--fail-on", "critical")
    assert alerting.exit_code == 1  # air_time is critical in the summer weeks
    assert "critical" in alerting.stdout and "report:" in alerting.stdout
    assert invoke(*common, "--fail-on", "never").exit_code == 0


def test_json_prints_the_alerts_document_and_quiet_prints_nothing(profile_path: Path,
                                                                  tmp_path: Path) -> None:
    common = ["run", "--baseline", profile_path, "--current", DATA / "flights_current.parquet",
              *WINDOWS, "--out", tmp_path, "--run-id", "j", "--fail-on", "never"]
    as_json = invoke(*common, "--json")
    document = json.loads(as_json.stdout)
    assert document == json.loads((tmp_path / "j" / "alerts.json").read_text())
    quiet = invoke(*common, "--quiet")
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr == ""


def test_report_rerenders_from_the_run_folder(profile_path: Path, tmp_path: Path) -> None:
    invoke("run", "--baseline", profile_path, "--current", DATA / "flights_current.parquet",
           *WINDOWS, "--out", tmp_path, "--run-id", "rr", "--quiet")
    run_dir = tmp_path / "rr"
    before = (run_dir / "report.md").read_text()
    (run_dir / "report.md").unlink()
    (run_dir / "report.html").unlink()
    result = invoke("report", run_dir)
    assert result.exit_code == 0
    assert (run_dir / "report.md").read_text() == before
    assert (run_dir / "report.html").stat().st_size > 10_000


def test_validate_summarises_good_files_and_rejects_bad_ones(profile_path: Path,
                                                            tmp_path: Path) -> None:
    good = invoke("validate", profile_path, DATA / "demo.toml", DATA / "flights_current.parquet")
    assert good.exit_code == 0
    assert "profile of 7 features" in good.stdout and "raw table, 39,452 rows" in good.stdout
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    bad = invoke("validate", broken)
    assert bad.exit_code == 2
    assert "broken.parquet" in one_error_line(bad)


@pytest.mark.parametrize(("args", "expected"), [
    (["run", "--baseline", "missing.parquet", "--current", "x.parquet"],
     "file 'missing.parquet': file not found"),
    (["run", "--metric", "kll", "--baseline", "a", "--current", "b"], "drift.metric: unknown"),
    (["run", "--fail-on", "sometimes", "--baseline", "a", "--current", "b"], "output.fail_on"),
    (["run", "--current", "x.parquet"], "input.baseline: required"),
    (["profile", "missing.parquet", "--out", "p.parquet"], "file 'missing.parquet'"),
    (["report", "no-such-run"], "no-such-run"),
])
def test_bad_input_exits_2_with_one_line_naming_it(args: list[str], expected: str,
                                                   tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke(*args)
    assert result.exit_code == 2
    assert expected in one_error_line(result)


def test_unknown_config_key_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('[alerts]\nwran = 0.1\n')
    result = invoke("run", "--config", config)
    assert result.exit_code == 2
    assert "unknown key 'alerts.wran' (did you mean 'alerts.warn'?)" in one_error_line(result)


def test_data_derived_names_are_printed_as_text_not_markup(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    name = "[/]<b>[red]x"  # an unbalanced closing tag would crash rich's markup parser
    pl.DataFrame({name: rng.normal(size=2000)}).write_parquet(tmp_path / "b.parquet")
    pl.DataFrame({name: rng.normal(2.0, 1.0, size=2000)}).write_parquet(tmp_path / "c.parquet")
    result = CliRunner().invoke(app, ["run", "--baseline", str(tmp_path / "b.parquet"),
                                      "--current", str(tmp_path / "c.parquet"), "--out",
                                      str(tmp_path), "--run-id", "[bold]x"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    assert name in result.stdout and "[bold]x" in result.stdout


@pytest.mark.slow
def test_demo_writes_the_report_and_says_where(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    report = tmp_path / "demo-flights" / "report.html"
    assert f"Open the report: {report}" in result.stdout
    run_files = {p.name for p in report.parent.iterdir()}
    assert {"drift.parquet", "alerts.json", "report.md", "models.parquet",
            "estimates.parquet"} <= run_files
    assert (tmp_path / "flights_profile.parquet").is_file()


@pytest.mark.parametrize("flag", ["--max-categories", "--top-k"])
def test_profile_keeps_at_most_max_categories(flag: str, tmp_path: Path) -> None:
    # --top-k is the deprecated name of profile.max_categories; both keep the most frequent
    from pipeline.bins.profile import read_profile

    path = tmp_path / "p.parquet"
    result = invoke("profile", DATA / "flights_baseline.parquet", "--out", path,
                    "--feature", "dest", flag, "3", "-q")
    assert result.exit_code == 0, result.output
    kept = read_profile(path).histograms().filter(~pl.col("bin").str.starts_with("__"))
    expected = (pl.read_parquet(DATA / "flights_baseline.parquet")["dest"].value_counts()
                .sort(["count", "dest"], descending=[True, False])["dest"].head(3))
    assert sorted(kept["bin"]) == sorted(expected)
