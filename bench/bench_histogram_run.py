"""The 500,000-row histogram run of issue 12, whole process, against its divergences plus I/O.

Run: ``.venv/bin/python bench/bench_histogram_run.py [--features 2000] [--windows 50]
[--segments 5] [--bins 20] [--repeats 2]`` (about 1 minute per round and 2 GB at the
defaults; needs GNU time at /usr/bin/time).

The tables of ``bench_decide.generate`` (baseline: 2,000 features x 5 segments x 20 bins;
current: x 50 windows = 10^7 long rows) are written to Parquet in a temporary folder. Each
round, one after the other (so a change of load hits both alike):

- **reference**, in this process: read both Parquet files, the seven divergences of every
  (feature, segment, window) row from the dense count arrays, and write the run's own
  Parquet outputs again (``drift.parquet`` and the history partition's ``part.parquet`` and
  ``histograms.parquet``, as the run writes them): what the run reads, computes at the
  least, and writes;
- **run**: ``kl-drift run`` in a fresh process writing drift.parquet, alerts.json, report.md
  and report.html: wall time and peak RSS (GNU time's maximum resident set size);
- **reference in a fresh process** (shown beside, not the target's): the same reference as
  a process of its own like the run, timed from its start to its exit less the loading of
  the outputs it writes again, so with the start-up and the fresh memory the run pays;
- **reference pairing by key** (shown beside, not the target's), in this process: the
  reference, but with each current count paired with its baseline count by a join on
  (segment, feature, bin) instead of by the files' row order, which only the generator
  knows: the least a program that reads these files as data must do.

Targets (issue 12): run <= 3x the reference, peak <= 2 GiB, report.html <= 2 MB.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from kl_metrics import divergences
from pipeline.config import METRICS, load_config
from pipeline.files import write_parquet
from pipeline.formats import DRIFT_FILE
from pipeline.write.history import HISTORY_DIR

CONFIG = """\
[input]
baseline = "base.parquet"
current = "cur.parquet"
segments = ["segment_id"]
[output]
dir = "out"
run_id = "big"
fail_on = "never"
"""


def dense(table: pl.DataFrame, bins: int, column: str = "count") -> np.ndarray:
    """The counts of a generated long table as (histograms, bins), in its written order."""
    return table[column].to_numpy().reshape(-1, bins)


def written(folder: Path) -> list[Path]:
    """The Parquet files a run writes: drift.parquet and its history partition's parts."""
    return [folder / "out" / "big" / DRIFT_FILE,
            *sorted((folder / "out" / HISTORY_DIR / "run_id=big").glob("*.parquet"))]


def reference_round(folder: Path, bins: int, windows: int, *,
                    keyed: bool = False) -> tuple[float, float]:
    """Seconds to read both inputs, compute the seven divergences and write the run's Parquet
    outputs again (loaded beforehand, written as the run writes them), and the seconds it
    took to load those outputs. With ``keyed``, counts are paired by key, not by row order."""
    config = load_config(None).drift
    loading = time.perf_counter()
    outputs = {path: pl.read_parquet(path) for path in written(folder)}
    start = time.perf_counter()
    base_table = pl.read_parquet(folder / "base.parquet")
    cur_table = pl.read_parquet(folder / "cur.parquet")
    if keyed:
        paired = cur_table.join(base_table, on=[c for c in base_table.columns if c != "count"],
                                how="left", suffix="_baseline", maintain_order="left")
        divergences(dense(paired, bins), dense(paired, bins, "count_baseline"),
                    metrics=METRICS, base=config.log_base, eps=config.eps)
    else:
        base = dense(base_table, bins)
        divergences(dense(cur_table, bins).reshape(base.shape[0], windows, bins),
                    base[:, None, :], metrics=METRICS, base=config.log_base, eps=config.eps)
    for path, table in outputs.items():
        write_parquet(folder / f"rewritten-{path.name}", table)
    return time.perf_counter() - start, start - loading


def fresh_reference_round(folder: Path, bins: int, windows: int) -> float:
    """:func:`reference_round` in a process of its own: seconds from its start to its exit,
    less the loading of the outputs it writes again."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--reference-in", str(folder), str(bins),
                           str(windows)], check=True, capture_output=True, text=True)
    return time.perf_counter() - start - float(done.stdout.split()[-1])


def run_round(folder: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one ``kl-drift run`` process."""
    kl_drift = Path(sys.executable).with_name("kl-drift")
    start = time.perf_counter()
    subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(folder / "time.txt"),
                    str(kl_drift), "run", "--config", str(folder / "run.toml"), "-q"],
                   check=True, cwd=folder, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    return wall, int((folder / "time.txt").read_text().split()[-1]) / 1024


def main() -> None:
    if sys.argv[1:2] == ["--reference-in"]:  # fresh_reference_round's process
        folder, bins, windows = sys.argv[2:5]
        print(reference_round(Path(folder), int(bins), int(windows))[1])
        return
    # the generator is imported here: the reference's own process does not need it
    from bench_decide import generate, table_arguments

    args = table_arguments(__doc__)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        base, cur = generate(args.features, args.windows, args.segments, args.bins, args.seed)
        base.write_parquet(folder / "base.parquet")
        cur.write_parquet(folder / "cur.parquet")
        (folder / "run.toml").write_text(CONFIG)
        print(f"{cur.height // args.bins:,} drift rows x {args.bins} bins "
              f"({cur.height:,} current long rows)")
        del base, cur
        runs, peaks, references, fresh, keyed = [], [], [], [], []
        for _ in range(args.repeats):
            wall, peak = run_round(folder)
            runs.append(wall)
            peaks.append(peak)
            references.append(reference_round(folder, args.bins, args.windows)[0])
            fresh.append(fresh_reference_round(folder, args.bins, args.windows))
            keyed.append(reference_round(folder, args.bins, args.windows, keyed=True)[0])
            print(f"  run {wall:6.2f} s, peak {peak:6.0f} MiB; reference "
                  f"{references[-1]:5.2f} s; ratio {wall / references[-1]:5.2f}x; in a fresh "
                  f"process {fresh[-1]:5.2f} s ({wall / fresh[-1]:4.2f}x); pairing by key "
                  f"{keyed[-1]:5.2f} s ({wall / keyed[-1]:4.2f}x)")
        out = folder / "out" / "big"
        ratios = [r / ref for r, ref in zip(runs, references, strict=True)]
        print(f"kl-drift run: median {statistics.median(runs):.2f} s, peak "
              f"{max(peaks):.0f} MiB (target 2,048)")
        print(f"reference (read inputs + 7 divergences + write the Parquet outputs): median "
              f"{statistics.median(references):.2f} s")
        print(f"run / reference: median {statistics.median(ratios):.2f}x (target <= 3)")
        for name, times in (("in a fresh process", fresh), ("pairing by key", keyed)):
            ratio = statistics.median(r / t for r, t in zip(runs, times, strict=True))
            print(f"reference {name}: median {statistics.median(times):.2f} s; run / it: "
                  f"median {ratio:.2f}x")
        for name in ("drift.parquet", "alerts.json", "report.html", "report.md"):
            print(f"  {name}: {(out / name).stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
