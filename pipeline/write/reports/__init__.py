"""report.md and report.html of a run, rendered from its tables and alerts.json.

Nothing is recomputed: `write_reports` only reads the run folder (drift.parquet, the model,
estimate and joint tables when the run has them, alerts.json) and, optionally, the history
dataset, so ``kl-drift report RUN_DIR`` can re-render old runs. A run being written passes
the tables it has just written instead, so they are not read back.

The renderers are imported on first use, so that importing a light submodule such as
`pipeline.write.reports.summary` does not load Jinja2; nothing here is imported until
reports are written.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.write.reports.html import render_html
    from pipeline.write.reports.markdown import render_markdown
    from pipeline.write.run_folder import RunFolder

__all__ = ["render_html", "render_markdown", "write_reports"]
_LAZY = {"render_html": "pipeline.write.reports.html",
         "render_markdown": "pipeline.write.reports.markdown"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def write_reports(
    run_dir: str | os.PathLike[str],
    *,
    history_dir: str | os.PathLike[str] | None = None,
    run: RunFolder | None = None,
) -> list[Path]:
    """(Re)write ``report.md`` and ``report.html`` in a run folder, each atomically.

    Parameters
    ----------
    run_dir : path
        A run folder: ``alerts.json`` and the tables of the parts it says the run checked
        (`pipeline.write.run_folder.read_run`).
    history_dir : path, optional
        The history dataset (`pipeline.write.history`); adds drift across runs to the plots,
        reading only the newest runs' rows of the features plotted. A missing folder is
        fine: the report then has no across-runs plots.
    run : RunFolder, optional
        The folder's alerts.json and tables as written (in memory): the reports are
        rendered from them, and the folder is not read (default: read it,
        `pipeline.write.run_folder.read_run`).

    Returns
    -------
    list of pathlib.Path
        The report files written.

    Raises
    ------
    pipeline.errors.InputError
        When a file is missing or malformed.
    """
    import polars as pl

    from pipeline.files import atomic_write_text
    from pipeline.formats import DRIFT_FILE
    from pipeline.write.reports.html import render_html
    from pipeline.write.reports.markdown import render_markdown
    from pipeline.write.reports.summary import BinsLoader, summarize
    from pipeline.write.run_folder import read_bins, read_run

    run_dir = Path(run_dir)
    bins: BinsLoader | None = None  # the table's own `bins` column, when it is in memory
    if run is None:
        run = read_run(run_dir, bins=False)  # the few rows shown load their bins from the file
        loaded: dict[int, Any] = {}

        def from_file(rows: pl.Series) -> pl.Series:
            # One pass over the file for report.html; report.md's rows are among its rows.
            missing = [row for row in rows.to_list() if row not in loaded]
            if missing:
                found = read_bins(run_dir / DRIFT_FILE, pl.Series(missing, dtype=pl.UInt32))
                loaded.update(zip(missing, found, strict=True))
            return pl.Series("bins", [loaded[row] for row in rows.to_list()])
        bins = from_file

    # what both reports show of the features, computed once
    summary = None if run.drift is None else summarize(run.drift)
    page = render_html(run.drift, run.alerts, history_dir, models=run.models,
                       estimates=run.estimates, joint=run.joint, bins=bins, trends=run.trends,
                       summary=summary)
    text = render_markdown(run.drift, run.alerts, models=run.models, estimates=run.estimates,
                           joint=run.joint, bins=bins, trends=run.trends, summary=summary)
    return [atomic_write_text(run_dir / "report.md", text),
            atomic_write_text(run_dir / "report.html", page)]
