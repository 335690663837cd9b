"""The ``kl-drift`` command line.

Heavy imports (polars, the pipeline, Prefect) happen inside the commands, so ``--help``
answers at once; Prefect's temporary server only starts for ``--prefect`` and ``serve``.
Exit codes: 0 ok, 1 alerts at or above ``--fail-on``, 2 bad input, config or output
location, 3 an unexpected failure (a bug: its traceback goes to a log file, one line to
stderr), so a scheduler never mistakes a crash for drift.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer

if TYPE_CHECKING:
    from rich.console import Console


class _Program(typer.Typer):
    """The CLI. ``app()`` (the ``kl-drift`` console script, ``python -m flows.cli``) runs it
    as a process and ends that process; test runners invoke the commands without it."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # pydantic looks for plugins in the entry points of every installed distribution
        # before its first validator (typer's options, the config): 0.015 s of a process
        # with 200 of them, for plugins kl-drift does not use. An explicit setting wins
        # (PYDANTIC_DISABLE_PLUGINS= loads them all).
        os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
        # OpenBLAS (numpy's and scipy's copies) starts a worker thread per core, each of
        # which busy-waits 2^28 cycles for work before it sleeps: 0.06 s of CPU of every
        # process on 2 cores, most of which make no BLAS call. 2^4 cycles (OpenBLAS's
        # least) lets them sleep at once; a BLAS call still uses as many threads, so its
        # results are the same. Set before numpy loads (the commands import it).
        os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
        _bound_malloc_arenas()
        _PROCESS.append(True)
        try:
            return super().__call__(*args, **kwargs)
        finally:
            # The process ends here. Tearing the interpreter down frees every class and
            # function of the ~800 modules a run imports: reference cycles, which the
            # collector frees one by one (0.1-0.15 s of CPU). Frozen, they are left to the OS
            # with the rest of the process's memory. Exit handlers, flushing and non-cyclic
            # finalizers run as before.
            gc.freeze()


# glibc's mallopt parameter: the number of malloc arenas
_M_ARENA_MAX = -8


def _bound_malloc_arenas() -> None:
    """At most one glibc malloc arena per core the run uses (unless ``MALLOC_ARENA_MAX`` is
    set). glibc gives each thread that allocates an arena of its own, up to 8 per core, and
    keeps what is freed in it for that arena's later allocations: the numpy temporaries of
    the run's threads (:mod:`pipeline.parallel`) then add up, 250-300 MiB more at the peak
    of the 500,000-row run. Set before any thread allocates: glibc fixes the limit when it
    makes its second arena. The variable is set too, for the processes this one starts
    (the flow runs of ``kl-drift serve``), whose glibc reads it at their start."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return
    import ctypes

    # pipeline.parallel.threads() (polars' pool size), read without importing polars:
    # `--help` must stay fast
    cores = os.environ.get("POLARS_MAX_THREADS", "")
    arenas = int(cores) if cores.isdigit() and int(cores) > 0 else len(os.sched_getaffinity(0))
    os.environ["MALLOC_ARENA_MAX"] = str(arenas)
    with contextlib.suppress(OSError, AttributeError):  # another C library: left as it is
        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, arenas)


#: Non-empty in the ``kl-drift`` process (not in test runners invoking the commands).
_PROCESS: list[bool] = []


@contextmanager
def _importing() -> Iterator[None]:
    """A command's imports, in the ``kl-drift`` process: with the cyclic collector off, and
    what they made frozen after them. The collector would otherwise traverse the ~800
    modules' new classes and functions some 130 times while they load (0.03-0.05 s of CPU),
    and again in every full collection, finding no garbage among them."""
    if not _PROCESS or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


app = _Program(
    name="kl-drift",
    help="Exact, explainable KL/JS drift on histograms: profile a baseline, check windows "
    "of current data against it, and write reports ML-ops can act on.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
#: Status colours on a terminal (rich leaves them out when piped, unless FORCE_COLOR).
STATUS_STYLES = {"critical": "bold red", "warn": "yellow", "error": "magenta",
                 "insufficient_data": "dim", "ok": "green"}

EXIT_OK, EXIT_ALERTS, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3
#: Where crash logs go (default: the system's temp folder).
LOG_DIR_ENV = "KL_DRIFT_LOG_DIR"
DEMO_DATA = Path(__file__).resolve().parent.parent / "data"

P = ParamSpec("P")
R = TypeVar("R")

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config file (flags override it).")
]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Folder for run folders.")]
RunIdOpt = Annotated[str | None, typer.Option("--run-id", help="Run id (same id: replaced).")]
FailOnOpt = Annotated[
    str | None,
    typer.Option("--fail-on", help="Exit 1 on these statuses: critical, warn (or worse), "
                 "error, never, or a comma-separated list, e.g. critical,error."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
TextfileOpt = Annotated[
    Path | None,
    typer.Option("--prometheus-textfile", help="Write the run's metrics to this node-exporter "
                 "textfile (*.prom), as export.prometheus.textfile."),
]
PushgatewayOpt = Annotated[
    str | None,
    typer.Option("--pushgateway", help="Push the run's metrics to this Pushgateway URL, as "
                 "export.prometheus.pushgateway."),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]
JointOpt = Annotated[bool, typer.Option(
    "--joint", help="Joint drift too, with the [joint] defaults unless the config has them.")]
TimestampOpt = Annotated[
    str | None, typer.Option("--timestamp", help="Timestamp column that defines windows.")
]
PeriodOpt = Annotated[
    str | None, typer.Option("--period", help='Window length, e.g. "1h", "1d", "1w".')
]
SegmentOpt = Annotated[
    list[str] | None, typer.Option("--segment", help="Segment column (repeatable).")
]


def console(*, stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr), made when something is printed: a quiet run
    never imports rich (41 modules)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _exits(*, aborts: bool = False) -> tuple[type[BaseException], ...]:
    """The exceptions that end a command with its own exit code (with ``aborts``, also an
    abort or a usage error): typer's, and click's when click is loaded. Older typers raise
    click's; a newer one never loads click, and nothing raises what was never imported."""
    click = sys.modules.get("click")
    found: tuple[type[BaseException], ...] = (typer.Exit, *((typer.Abort,) if aborts else ()))
    if click is not None:
        found += (click.exceptions.Exit, *((click.exceptions.Abort, click.ClickException)
                                          if aborts else ()))
    return found


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("kl-drift")
        except PackageNotFoundError:  # a source tree that is not installed
            number = "0+unknown"
        console().print(f"kl-drift {number}", markup=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True,
                           help="Print the version and exit.")
    ] = False,
) -> None:
    """Options of kl-drift itself (the commands have their own)."""


def _crash_log(error: BaseException) -> Path:
    """Write the traceback of an unexpected failure to a log file; return its path."""
    folder = Path(os.environ.get(LOG_DIR_ENV) or tempfile.gettempdir())
    name = f"kl-drift-crash-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    text = (f"command: {' '.join(sys.argv)}\n\n"
            + "".join(traceback.format_exception(error)))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    except OSError:
        folder = Path(tempfile.gettempdir())  # the configured folder is unusable
        (folder / name).write_text(text, encoding="utf-8")
    return folder / name


@contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """Print kl-drift's own warnings (e.g. a history partition skipped) as one line each
    on stderr when the command ends without an error; other warnings go their usual way."""
    import warnings

    from pipeline.errors import KLDriftWarning

    failed, caught = True, []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", KLDriftWarning)
            yield
        failed = False
    except _exits():  # the command ended with its exit code
        failed = False
        raise
    finally:
        ours = [w for w in caught if issubclass(w.category, KLDriftWarning)]
        for w in caught:
            if w not in ours:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        if not failed:
            for message in dict.fromkeys(str(w.message) for w in ours):
                console(stderr=True).print(f"kl-drift: warning: {message}", markup=False)


def user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn kl-drift's own errors into one line on stderr and exit status 2, and any other
    failure into one line naming its log file and exit status 3."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from pipeline.errors import KLDriftError

        try:
            with _warnings_as_lines():
                return command(*args, **kwargs)
        except KLDriftError as exc:
            console(stderr=True).print(f"kl-drift: error: {exc}", markup=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except _exits(aborts=True):
            raise
        except Exception as exc:  # a bug, not bad input: keep the traceback, say where
            log = _crash_log(exc)
            first = (str(exc).strip().splitlines() or [""])[0]
            console(stderr=True).print(
                f"kl-drift: internal error: {type(exc).__name__}: {first} (traceback in {log}; "
                "please report it)", markup=False)
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper


def _fail_on(value: str | None) -> str | list[str] | None:
    """``--fail-on``: one word, or a comma-separated list of statuses."""
    if value is None or "," not in value:
        return value
    return [part.strip() for part in value.split(",") if part.strip()]


@contextmanager
def steps(quiet: bool) -> Iterator[Callable[[str], None]]:
    """A spinner showing the current step of a long run; ``progress(text)`` advances it."""
    if quiet or not console(stderr=True).is_terminal:  # a spinner in a log file is noise
        yield lambda _text: None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console(stderr=True), transient=True) as bar:
        task = bar.add_task("starting")
        yield lambda text: bar.update(task, description=text)


def _prefect_defaults() -> None:
    """No telemetry from Prefect's temporary server (it has no network to send it to), and
    90 s rather than 20 s for it to start: on a busy machine its migrations take longer."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


def _load(config: Path | None, overrides: dict[str, Any]) -> Any:
    with _importing():
        from pipeline.config import load_config

    return load_config(config, overrides)


def _with_joint(settings: Any, joint: bool) -> Any:
    """``settings`` with a ``[joint]`` section (its defaults) when ``--joint`` asks for one."""
    if not joint or settings.joint is not None:
        return settings
    from pipeline.config import JointConfig

    return settings.model_copy(update={"joint": JointConfig()})


def _print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, allow_nan=False) + "\n")


def _exports(textfile: Path | None, pushgateway: str | None) -> dict[str, Any]:
    """Config overrides of the --prometheus-textfile and --pushgateway flags."""
    return {"export.prometheus.textfile": None if textfile is None else str(textfile),
            "export.prometheus.pushgateway": pushgateway}


def _finish(result: Any, *, as_json: bool, quiet: bool, document: Any = None) -> NoReturn:
    """Print a run's result (its alerts document, or ``document``, as JSON with --json)
    and exit with its exit code."""
    if as_json:
        _print_json(result.alerts if document is None else document)
    elif not quiet:
        _summary_table(result)
    raise typer.Exit(result.exit_code)


SHOWN_ROWS = 25
#: Longest value a key or number column keeps on one line whatever the width, and the
#: width a text column keeps at least (when its values are that long).
WHOLE, NARROW = 60, 12
#: Statuses of the rows printed, most severe first.
SEVERITY_FIRST = ("critical", "warn", "error", "insufficient_data", "ok")
#: Kinds of table columns: ``key`` columns identify a row (segment, feature, window) and are
#: never shortened, ``number`` columns are right-aligned, ``text`` columns wrap.
KEY, NUMBER, TEXT = "key", "number", "text"


def _counts(title: str, summary: dict[str, int]) -> None:
    """One line: the title and the non-zero counts by status, coloured on a terminal."""
    from rich.markup import escape
    from rich.text import Text

    line = Text.from_markup(f"[bold]{escape(title)}[/]: ")
    counts = [(status, n) for status, n in summary.items() if status != "total" and n]
    for i, (status, n) in enumerate(counts):
        line.append(", " if i else "")
        line.append(f"{n} {status}", style=STATUS_STYLES.get(status, ""))
    console().print(line if counts else line.append("nothing checked"))


def _table(columns: list[tuple[str, str]], rows: list[list[str]], more_in: str) -> None:
    """The first SHOWN_ROWS rows; cells are data (feature names, ids), never rich markup.

    ``columns`` are (header, kind) pairs. Nothing is cut with an ellipsis, at any width
    and in a log: key and number columns keep their values whole on one line (up to
    `WHOLE` characters; longer ones fold onto the next line), text columns wrap in what
    width is left (at least `NARROW`); when even that does not fit, the lines get longer
    than the terminal rather than losing what identifies a row. A ``status`` column is coloured on a
    terminal.
    """
    from rich.table import Table
    from rich.text import Text

    if not rows:
        return
    # no box: at 80 columns every character goes to the values
    table = Table(box=None, pad_edge=False, header_style="bold")
    shown = rows[:SHOWN_ROWS]
    for i, (header, kind) in enumerate(columns):
        longest = max(len(row[i]) for row in shown)
        whole = min(NARROW if kind == TEXT else WHOLE, longest)
        table.add_column(Text(header), no_wrap=kind != TEXT, overflow="fold",
                         justify="right" if kind == NUMBER else "left", min_width=whole)
    headers = [header for header, _ in columns]
    for row in shown:
        table.add_row(*(Text(cell, style=STATUS_STYLES.get(cell, "") if header == "status"
                             else "") for header, cell in zip(headers, row, strict=True)))
    console().print(table)
    if len(rows) > SHOWN_ROWS:
        console().print(f"… and {len(rows) - SHOWN_ROWS} more in {more_in}", markup=False)


def _number(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _summary_table(result: Any) -> None:
    """What the run checked: feature rows at warn or worse (and errors), most severe first,
    model and joint rows at warn or worse, and the KL estimates. Windows are shown as the
    report shows them (``2024-06-03``, ``2024-06-03 13:00``)."""
    from pipeline.write.reports.summary import window_labels

    document = result.alerts
    if result.drift is not None:
        _counts(f"run {result.run_id}", document["summary"])
        # most severe first; within a status alerts.json's order (new alerts first)
        rows = sorted(document["alerts"] + document["problems"],
                      key=lambda row: SEVERITY_FIRST.index(row["status"]))
        windows = window_labels(result.drift)
        _table([("status", KEY), ("segment", KEY), ("feature", KEY), ("window", KEY),
                (str(document["run"]["metric"]), NUMBER), ("q", NUMBER),
                ("top bin / reason", TEXT)],
               [[row["status"], row["segment"], row["feature"],
                 windows.get(row["window"], row["window"]), _number(row.get("value"), ".3f"),
                 _number(row.get("q_value"), ".2g"),
                 (row.get("top_bins") or [{}])[0].get("bin") or row.get("reason") or ""]
                for row in rows], "alerts.json")
    if result.models is not None:
        block = document["models"]
        _counts(f"run {result.run_id}, model outputs ({block['n_matched']:,} matched examples)",
                block["summary"])
        windows = window_labels(result.models.summary)
        _table([("status", KEY), ("segment", KEY), ("window", KEY), ("n", NUMBER),
                (str(block["metric"]), NUMBER), ("flip rate", NUMBER), ("top example", TEXT)],
               [[row["status"], row["segment"], windows.get(row["window"], row["window"]),
                 f"{row['n']:,}", _number(row["value"], ".3f"),
                 _number(row["flip_rate"], ".1%"),
                 _top_example((row["top_examples"] or [None])[0])]
                for row in block["alerts"]], "alerts.json")
    if result.joint is not None:
        block = document["joint"]
        _counts(f"run {result.run_id}, joint drift ({len(block['features'])} features)",
                block["summary"])
        windows = window_labels(result.joint)
        _table([("status", KEY), ("segment", KEY), ("window", KEY), ("KL", NUMBER),
                ("interval", TEXT), ("q", NUMBER), ("top features", TEXT)],
               [[row["status"], row["segment"], windows.get(row["window"], row["window"]),
                 _number(row["value"], ".3f"),
                 f"{_number(row['kl_low'], '.3f')} to {_number(row['kl_high'], '.3f')}",
                 _number(row["q_value"], ".2g"),
                 ", ".join(f["feature"] for f in row["top_features"])]
                for row in block["alerts"]], "alerts.json")
    if result.estimates is not None:
        _counts(f"run {result.run_id}, KL estimates", {"windows": result.estimates.height})
        windows = window_labels(result.estimates)
        _table([("segment", KEY), ("window", KEY), ("estimator", KEY), ("value", NUMBER),
                ("stderr", NUMBER), ("interval", TEXT), ("n", NUMBER)],
               [[row["segment"], windows.get(row["window"], row["window"]), row["estimator"],
                 _number(row["value"], ".4g"), _number(row["stderr"], ".4g"),
                 f"{_number(row['ci_low'], '.4g')} to {_number(row['ci_high'], '.4g')}",
                 f"{row['n']:,}"]
                for row in result.estimates.iter_rows(named=True)], "estimates.parquet")
    console().print(f"report: {result.run_dir / 'report.html'}", markup=False)


def _top_example(example: dict[str, Any] | None) -> str:
    if example is None:
        return ""
    return f"{example['id']}: {example['baseline_class']} → {example['current_class']}"


@app.command()
@user_errors
def run(
    config: ConfigOpt = None,
    baseline: Annotated[
        str | None, typer.Option(help="Baseline profile, histogram table or raw Parquet.")
    ] = None,
    current: Annotated[
        str | None, typer.Option(help="Current data: a file, glob or (hive) folder.")
    ] = None,
    timestamp: TimestampOpt = None,
    period: PeriodOpt = None,
    segment: SegmentOpt = None,
    feature: Annotated[
        list[str] | None, typer.Option("--feature", help="Only this feature (repeatable).")
    ] = None,
    metric: Annotated[str | None, typer.Option(help="Alert metric, e.g. js_distance.")] = None,
    out_dir: OutOpt = None,
    run_id: RunIdOpt = None,
    fail_on: FailOnOpt = None,
    prefect: Annotated[
        bool, typer.Option("--prefect", help="Run as a Prefect flow (artifacts, events).")
    ] = False,
    joint: JointOpt = False,
    prometheus_textfile: TextfileOpt = None,
    pushgateway: PushgatewayOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Check current data against a baseline and write drift.parquet, alerts.json and reports.

    With ``--joint`` (or a ``[joint]`` section) also the drift of the features' joint
    distribution (joint.parquet; needs ``pip install 'kl-drift[joint]'``).
    """
    overrides = {
        "input.baseline": baseline, "input.current": current, "input.timestamp": timestamp,
        "input.period": period, "input.segments": segment, "input.features": feature,
        "drift.metric": metric, "output.dir": None if out_dir is None else str(out_dir),
        "output.run_id": run_id, "output.fail_on": _fail_on(fail_on),
        **_exports(prometheus_textfile, pushgateway),
    }
    settings = _with_joint(_load(config, overrides), joint)
    if settings.input.executor == "dask" and not prefect:
        from pipeline.errors import ConfigError

        raise ConfigError("input.executor: 'dask' bins on a cluster inside the Prefect flow; "
                          "add --prefect (or use kl-drift serve), or set executor = 'local'")
    if prefect:
        _prefect_defaults()
        # --quiet: stderr holds kl-drift's one error line only, not Prefect's own ERROR
        # lines about the same failure; --json: stdout holds the JSON document only.
        if quiet or as_json:
            os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL" if quiet else "WARNING")
        from flows.flows import drift_check

        result = drift_check(settings)
    else:
        with _importing():
            from pipeline.run import run_drift

        with steps(quiet or as_json) as progress:
            result = run_drift(settings, progress=progress)
    _finish(result, as_json=as_json, quiet=quiet)


@app.command()
@user_errors
def profile(
    baseline: Annotated[str, typer.Argument(help="Raw baseline Parquet: file, glob or folder.")],
    output: Annotated[Path, typer.Option("--out", "-o", help="Profile Parquet to write.")],
    config: ConfigOpt = None,
    feature: Annotated[
        list[str] | None, typer.Option("--feature", help="Only this feature (repeatable).")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Skip this column (repeatable).")
    ] = None,
    strategy: Annotated[str | None, typer.Option(help="quantile or uniform.")] = None,
    bins: Annotated[int | None, typer.Option(help="Numeric bins (default 20).")] = None,
    max_categories: Annotated[int | None, typer.Option(
        "--max-categories", "--top-k",
        help="Most categories kept per feature (default 1000).")] = None,
    segment: SegmentOpt = None,
    joint: JointOpt = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the profile's path and metadata as JSON.")
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Build the reusable baseline profile (bin edges, categories, counts) from raw data.

    With segments, every segment gets its own baseline counts over one shared bin layout.
    With ``--joint`` (or a ``[joint]`` section) it also keeps a seeded sample of baseline
    rows, next to it, for the joint drift check.
    """
    with _importing():
        from pipeline.baseline import build_baseline_profile
        from pipeline.bins.profile import write_profile
        from pipeline.read.location import redact

    settings = _with_joint(_load(config, {
        "input.features": feature, "input.exclude": exclude, "input.segments": segment,
        "profile.strategy": strategy, "profile.bins": bins,
        "profile.max_categories": max_categories,
    }), joint)
    with steps(quiet or as_json) as progress:
        progress(f"profiling {redact(baseline)}")
        built = build_baseline_profile(settings, baseline)
        write_profile(built, output)
    if as_json:
        _print_json({"profile": str(output), **built.metadata})
    elif not quiet:
        kinds = built.table.unique(["feature", "kind"]).group_by("kind").len().rows()
        sample = ("" if built.sample is None else
                  f"; a sample of {built.sample.collect().height:,} baseline rows next to it")
        console().print(f"profile {output}: {len(built.features)} features ("
                  + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds)) + ")" + sample,
                  markup=False)


@app.command()
@user_errors
def validate(
    paths: Annotated[list[str], typer.Argument(help="Config TOML, profile or Parquet tables.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print what each source is, as a JSON list.")
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Check configs and data files without running anything; exit 2 on the first problem.

    A config with ``executor = "dask"`` also has its Dask scheduler checked: reachable and
    with a worker, within ``input.dask_timeout``.
    """
    from pipeline.read.location import redact
    from pipeline.validate import describe

    checked = []
    for path in paths:
        kind, summary = describe(path)
        if kind == "config":
            settings = _load(Path(path), {})
            if settings.input.executor == "dask":
                from flows.dask_cluster import check_dask

                summary += f"; executor dask: {check_dask(settings.input)}"
        # a source is shown as messages show it: a password in a URL is masked
        checked.append({"source": redact(path), "kind": kind, "summary": summary})
        if not quiet and not as_json:
            console().print(f"ok {redact(path)}: {summary}", markup=False)
    if as_json:
        _print_json(checked)


@app.command()
@user_errors
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run folder holding drift.parquet.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the files written as JSON.")
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Re-render report.md and report.html from a run folder, without recomputing."""
    from pipeline.write.history import HISTORY_DIR
    from pipeline.write.reports import write_reports

    written = write_reports(run_dir, history_dir=run_dir.parent / HISTORY_DIR)
    if as_json:
        _print_json({"written": [str(path) for path in written]})
    elif not quiet:
        for path in written:
            console().print(f"wrote {path}", markup=False)


@app.command()
@user_errors
def models(
    config: ConfigOpt = None,
    baseline: Annotated[str | None, typer.Option(help="Baseline model outputs (Parquet).")] = None,
    current: Annotated[str | None, typer.Option(help="Current model outputs (Parquet).")] = None,
    id_column: Annotated[str | None, typer.Option("--id", help="Join column.")] = None,
    outputs: Annotated[
        list[str] | None,
        typer.Option("--outputs", help="One list column (a vector per row), or one column "
                     "per class (repeat the flag)."),
    ] = None,
    outputs_prefix: Annotated[
        str | None, typer.Option(help="Instead of --outputs: every column starting with it.")
    ] = None,
    class_name: Annotated[
        list[str] | None, typer.Option("--class-name", help="Class name, in order (repeatable).")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="logits or probabilities.")] = None,
    mode: Annotated[str | None, typer.Option(help="softmax (multi-class) or sigmoid.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Divide logits by T.")] = None,
    timestamp: TimestampOpt = None,
    period: PeriodOpt = None,
    segment: SegmentOpt = None,
    metric: Annotated[
        str | None, typer.Option(help="Aggregate that sets the status, e.g. js_distance_mean.")
    ] = None,
    warn: Annotated[float | None, typer.Option(help="Warn threshold of --metric.")] = None,
    critical: Annotated[float | None, typer.Option(help="Critical threshold.")] = None,
    out_dir: OutOpt = None,
    run_id: RunIdOpt = None,
    fail_on: FailOnOpt = None,
    prometheus_textfile: TextfileOpt = None,
    pushgateway: PushgatewayOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Per-example drift between two models' outputs (e.g. shadow vs production).

    Writes models.parquet, model_classes.parquet, model_examples.parquet, alerts.json and
    the reports into a run folder. Flags override the config's \\[models] section; without
    --config, give at least --baseline, --current and --outputs (or --outputs-prefix).
    """
    from pipeline.run import run_models

    # One --outputs value names a list column; several name one column per class.
    columns = outputs[0] if outputs and len(outputs) == 1 else outputs
    settings = _load(config, {
        "models.baseline": baseline, "models.current": current, "models.id_column": id_column,
        "models.outputs": columns, "models.outputs_prefix": outputs_prefix,
        "models.class_names": class_name, "models.kind": kind, "models.mode": mode,
        "models.temperature": temperature, "models.timestamp": timestamp,
        "models.period": period, "models.segments": segment, "models.metric": metric,
        "models.warn": warn, "models.critical": critical,
        "output.dir": None if out_dir is None else str(out_dir), "output.run_id": run_id,
        "output.fail_on": _fail_on(fail_on), **_exports(prometheus_textfile, pushgateway),
    })
    with steps(quiet or as_json) as progress:
        result = run_models(settings, progress=progress)
    _finish(result, as_json=as_json, quiet=quiet)


@app.command()
@user_errors
def estimate(
    source: Annotated[
        str | None, typer.Argument(help="Parquet of per-sample log-probabilities.")
    ] = None,
    config: ConfigOpt = None,
    logq: Annotated[
        str | None, typer.Option(help="Column: log-prob under the sampling distribution Q.")
    ] = None,
    logp: Annotated[str | None, typer.Option(help="Column: log-prob under the reference P.")] = (
        None),
    estimator: Annotated[str | None, typer.Option(help="k1, k2 or k3 (default).")] = None,
    direction: Annotated[
        str | None, typer.Option(help="forward: KL(Q||P) (default); reverse: KL(P||Q).")
    ] = None,
    level: Annotated[float | None, typer.Option(help="Confidence level (0.95).")] = None,
    timestamp: TimestampOpt = None,
    period: PeriodOpt = None,
    segment: SegmentOpt = None,
    sequence_id: Annotated[
        str | None, typer.Option(help="Column grouping samples into sequences.")
    ] = None,
    per: Annotated[
        str | None, typer.Option(help="token (default), or sequence: sum log-probs per id.")
    ] = None,
    out_dir: OutOpt = None,
    run_id: RunIdOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the estimates as JSON; write no run folder "
                           "unless --out or --run-id is given.")
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Monte-Carlo KL estimates (k1/k2/k3) with standard errors, per window and segment.

    Writes estimates.parquet, alerts.json and the reports into a run folder. Flags override
    the config's \\[estimate] section. Estimates have no thresholds: the exit code is 0 unless
    the input or config is bad (2).
    """
    settings = _load(config, {
        "estimate.source": source, "estimate.logq": logq, "estimate.logp": logp,
        "estimate.estimator": estimator, "estimate.direction": direction,
        "estimate.level": level, "estimate.timestamp": timestamp, "estimate.period": period,
        "estimate.segments": segment, "estimate.sequence_id": sequence_id,
        "estimate.per": per, "output.dir": None if out_dir is None else str(out_dir),
        "output.run_id": run_id,
    })
    if settings.estimate is None:
        from pipeline.errors import ConfigError

        raise ConfigError("estimate.source: required; pass SOURCE, or --config with an "
                          "[estimate] section")
    if as_json and out_dir is None and run_id is None:
        from pipeline.measure.estimate import estimate_kl

        _print_json(_json_rows(estimate_kl(
            settings.estimate, window_timezone=settings.input.window_timezone,
            min_coverage=settings.input.min_coverage)))
        return
    from pipeline.run import run_estimate

    with steps(quiet or as_json) as progress:
        result = run_estimate(settings, progress=progress)
    _finish(result, as_json=as_json, quiet=quiet, document=_json_rows(result.estimates))


def _json_rows(table: Any) -> list[dict[str, Any]]:
    """Rows of a table as JSON-safe dicts (non-finite numbers become null, with a reason)."""
    from pipeline.write.documents import json_safe

    return json_safe(table.to_dicts())


@app.command()
@user_errors
def serve(
    config: Annotated[Path, typer.Option("--config", "-c", help="TOML config file.")],
) -> None:
    """Serve the build_baseline and drift_check flows on the config's cron schedules."""
    _prefect_defaults()
    from flows.serve import serve_deployments

    # With the path, each scheduled run rereads the TOML, so edits apply without a restart.
    serve_deployments(_load(config, {}), config_path=str(config.resolve()))


@app.command()
@user_errors
def demo(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Where to write.")] = Path(
        "demo-output"
    ),
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Profile January 2013 NYC flights, check six summer weeks against it, write reports."""
    from pipeline.demo import run_demo

    with steps(quiet or as_json) as progress:
        result = run_demo(DEMO_DATA, out_dir, progress=progress)
    if as_json:
        _print_json(result.alerts)
    elif not quiet:
        _summary_table(result)
        console().print(f"\nOpen the report: {result.run_dir / 'report.html'}", markup=False)


def main() -> None:
    """Entry point for ``python -m flows.cli``."""
    app()


if __name__ == "__main__":
    main()
