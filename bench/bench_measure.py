"""Alignment and measurement at scale: ``align`` + ``compute_drift`` against the divergences.

Run: ``.venv/bin/python bench/bench_measure.py [--features 2000] [--windows 50] [--segments 5]
[--bins 20]`` (defaults: the 500,000-row histogram run of issue 12, 10M current long rows).

The histogram tables of :func:`bench_decide.generate` are aligned (:func:`pipeline.bins.align.
align`) and measured (:func:`pipeline.measure.drift.compute_drift`: seven divergences, effects,
per-bin lists). Timed in one process, each the best of ``--repeats`` rounds (wall and CPU),
against the seven divergences of every row in one ``kl_metrics.divergences`` call on the
aligned arrays (the floor of any implementation). Also prints how far the resident memory
rose above the generated tables during one untimed pass of the two stages (sampled every
10 ms from /proc).
"""

from __future__ import annotations

import threading
from pathlib import Path

from bench_decide import generate, table_arguments, timed

from kl_metrics import divergences
from pipeline.bins.align import Aligned, align
from pipeline.config import METRICS, load_config
from pipeline.measure.drift import compute_drift

_PAGE = 4096


class _PeakRss:
    """Highest resident set size (bytes) seen while inside the block (Linux /proc)."""

    def __init__(self) -> None:
        self.peak = self.start = self._rss()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def _rss() -> int:
        statm = Path("/proc/self/statm")
        return int(statm.read_text().split()[1]) * _PAGE if statm.exists() else 0

    def _sample(self) -> None:
        while not self._done.wait(0.01):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def main() -> None:
    args = table_arguments(__doc__)
    config = load_config(None)
    base, cur = generate(args.features, args.windows, args.segments, args.bins, args.seed)
    print(f"{cur.height:,} current long rows, {base.height:,} baseline long rows")
    with _PeakRss() as memory:  # one pass alone: the timed rounds overlap their results
        compute_drift(align(base, cur), config.drift)
    align_wall, align_cpu, aligned = timed(args.repeats, lambda: align(base, cur))
    assert isinstance(aligned, Aligned)
    drift_wall, drift_cpu, _ = timed(args.repeats, lambda: compute_drift(aligned, config.drift))
    ref_wall, ref_cpu, _ = timed(args.repeats, lambda: divergences(
        aligned.current, aligned.baseline, metrics=METRICS, base=config.drift.log_base,
        eps=config.drift.eps))
    print(f"{aligned.rows.height:,} rows x {args.bins} bins")
    print(f"divergences (7 metrics, all rows): {ref_wall:6.2f} s wall {ref_cpu:6.2f} s CPU")
    for name, wall, cpu in (("align", align_wall, align_cpu),
                            ("compute_drift", drift_wall, drift_cpu),
                            ("align + compute_drift", align_wall + drift_wall,
                             align_cpu + drift_cpu)):
        print(f"{name + ':':34s} {wall:6.2f} s wall {cpu:6.2f} s CPU  "
              f"({wall / ref_wall:.1f}x the divergences' wall, {cpu / ref_cpu:.1f}x CPU)")
    print(f"peak resident memory above the loaded tables: "
          f"{(memory.peak - memory.start) / 2**20:,.0f} MiB")


if __name__ == "__main__":
    main()
