#!/usr/bin/env python3
"""Time popmon (1.4.x) on a reference/current Parquet pair, like the peer-bench scripts.

usage: drift_popmon.py REF.parquet CUR.parquet  (run with the popmon venv's python; the
directory of ``bench_common.py`` from ``../shared/peer-bench`` comes from $PEER_BENCH)

Both frames get a constant ``date`` column (popmon needs a time axis; one batch each), then
``popmon.df_stability_report(current, time_axis="date", time_width="1d",
reference_type="external", reference=reference)``: histograms of both frames (popmon's own
binning), the comparison pipeline (ref_jsd, ref_pull, ...) and the HTML report, which is
written with ``to_file``. Timed compute = that call + to_file, from in-memory pandas frames.
Value = popmon's ``ref_jsd`` (Jensen-Shannon divergence to the reference) per column.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.environ.get("PEER_BENCH", "/work/shared/peer-bench"))
import argparse
import tempfile
import time
import warnings

from bench_common import (
    T_START,
    dataset_name,
    emit,
    peak_rss_mb,
    print_human,
    rss_mb,
    split_columns,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("ref")
    parser.add_argument("cur")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    import pandas as pd
    import popmon

    t_import = time.perf_counter() - T_START
    start = time.perf_counter()
    numeric, categorical = split_columns(args.ref)
    reference = pd.read_parquet(args.ref).assign(date=pd.Timestamp("2013-01-01"))
    current = pd.read_parquet(args.cur).assign(date=pd.Timestamp("2013-01-02"))
    t_read = time.perf_counter() - start
    rss_read, peak_read = rss_mb(), peak_rss_mb()

    start = time.perf_counter()
    report = popmon.df_stability_report(current, time_axis="date", time_width="1d",
                                        reference_type="external", reference=reference)
    with tempfile.TemporaryDirectory() as tmp:
        report.to_file(os.path.join(tmp, "popmon.html"))
    t_compute = time.perf_counter() - start

    values = {}
    comparisons = report.datastore.get("comparisons", {})
    for column in numeric + categorical:
        frame = comparisons.get(column)
        if frame is not None and "ref_jsd" in frame:
            values[column] = {"value": float(frame["ref_jsd"].iloc[-1])}
    out = {
        "system": "popmon", "method": "ref_jsd", "dataset": dataset_name(args.ref),
        "version": popmon.__version__, "rows_ref": len(reference), "rows_cur": len(current),
        "n_numeric": len(numeric), "n_categorical": len(categorical),
        "t_import_s": t_import, "t_read_s": t_read, "t_compute_s": t_compute,
        "rss_after_read_mb": rss_read, "peak_rss_after_read_mb": peak_read,
        "peak_rss_mb": peak_rss_mb(), "values": values,
        "value_kind": "JS divergence (popmon ref_jsd), popmon's own bins",
    }
    emit(out)
    print_human(out)


if __name__ == "__main__":
    main()
