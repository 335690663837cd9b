"""Decisions across windows and runs (pipeline.decide.state) against a brute-force reference.

The reference below re-implements the documented rules (docs/monitoring.md) as plain loops
over one series: persistence counted along the windows of every run so far, partial windows
held back, episodes, and new / ongoing / resolved. Hypothesis drives runs that check only
their newest window, re-check a random stretch of older ones, or see a window while it is
still partial.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from pipeline.decide.state import apply_state, previous_points

ALERTING = {"warn", "critical"}


@dataclass
class Decision:
    window_status: str
    status: str
    partial: bool


@dataclass
class Reference:
    """The rules as loops, one series, windows numbered in time order."""

    persistence: int
    decided: dict[int, Decision] = field(default_factory=dict)

    def run(self, checks: dict[int, tuple[str, bool]]) -> tuple[dict[int, tuple[str, str | None]],
                                                                 list[tuple[int, int]]]:
        """checks: window -> (window_status, partial). Returns window -> (status, lifecycle)
        for the checked windows, and the (since, window) of each episode the run resolved."""
        timeline = sorted(set(self.decided) | set(checks))
        ws = {w: checks[w][0] if w in checks else self.decided[w].window_status
              for w in timeline}
        partial = {w: checks[w][1] if w in checks else self.decided[w].partial
                   for w in timeline}
        points = [w for w in timeline if not partial[w]]
        status, streak = {}, 0
        for w in points:
            streak = streak + 1 if ws[w] in ALERTING else 0
            if w in checks:
                held = ws[w] in ALERTING and streak < self.persistence
                status[w] = "ok" if held else ws[w]
            else:
                status[w] = self.decided[w].status
        episodes, current = [], []
        for w in points:
            if ws[w] in ALERTING:
                current.append(w)
            elif current:
                episodes.append(current)
                current = []
        if current:
            episodes.append(current)
        result: dict[int, tuple[str, str | None]] = {
            w: ("insufficient_data", None) for w in checks if partial[w]}
        resolved = []
        for episode in episodes:
            was = {w: self.decided[w].status for w in episode if w in self.decided}
            reported = any(s in ALERTING for s in was.values())
            later = [w for w in points if w > episode[-1]
                     and ws[w] in ("ok", "warn", "critical")]
            closer = later[0] if later and ws[later[0]] == "ok" else None
            alerted = any(status[w] in ALERTING for w in episode)
            first_new = True
            for w in episode:
                if w not in checks:
                    continue
                if status[w] not in ALERTING:
                    result[w] = (status[w], None)
                elif first_new and not reported:
                    result[w], first_new = (status[w], "new"), False
                else:
                    first_new = False
                    result[w] = (status[w], "resolved" if closer is not None else "ongoing")
            if (closer is not None and closer in checks and alerted
                    and (closer not in self.decided
                         or self.decided[closer].window_status != "ok")):
                resolved.append((episode[0], closer))
        for w in checks:
            if w not in result:
                result[w] = (status[w], None)
            self.decided[w] = Decision(ws[w], result[w][0], partial[w])
        return result, resolved


def _label(day: int) -> str:
    return f"2024-01-{day + 1:02d}T00:00:00+00:00"


def _run_state(history: list[pl.DataFrame], checks: dict[int, tuple[str, bool]],
               persistence: int) -> tuple[pl.DataFrame, list[dict[str, object]]]:
    days = sorted(checks)
    current = pl.DataFrame({
        "segment": "all", "feature": "x", "window": [_label(d) for d in days],
        "window_status": [checks[d][0] for d in days], "reason": None,
        "partial": [checks[d][1] for d in days]},
        schema_overrides={"reason": pl.String})
    previous = (previous_points(pl.concat(history).lazy(), ["segment", "feature"]).collect()
                if history else None)
    state = apply_state(current, previous, persistence=persistence)
    history.append(state.table.select("segment", "feature", "window", "window_status",
                                      "status", "partial").with_columns(
        run_order=pl.lit(len(history), pl.Int64),
        row_order=pl.int_range(pl.len(), dtype=pl.Int64)))
    return state.table, state.resolved


verdicts = st.sampled_from(["ok", "ok", "warn", "critical", "insufficient_data"])


@st.composite
def schedules(draw: st.DrawFn) -> tuple[int, list[dict[int, tuple[str, bool]]]]:
    """Runs over days 0..n-1: day d's run checks day d (partial with some chance) and a
    random stretch of earlier days (complete); some days have no run of their own, so a
    later run may see an older window first (a backfill)."""
    n = draw(st.integers(1, 9))
    truth = draw(st.lists(verdicts, min_size=n, max_size=n))
    runs = []
    for day in range(n):
        if day < n - 1 and draw(st.integers(0, 4)) == 0:
            continue  # no run today
        start = draw(st.integers(0, day))
        checks = {d: (truth[d], False) for d in range(start, day)}
        checks[day] = (truth[day], draw(st.booleans()) and draw(st.booleans()))
        runs.append(checks)
        if checks[day][1] and draw(st.booleans()):  # seen again complete, same day
            runs.append({day: (truth[day], False)})
    return draw(st.integers(1, 3)), runs


@given(schedules())
def test_state_matches_the_reference_rules(case: tuple[int, list[dict]]) -> None:
    persistence, runs = case
    reference = Reference(persistence)
    history: list[pl.DataFrame] = []
    for checks in runs:
        table, resolved = _run_state(history, checks, persistence)
        expected, expected_resolved = reference.run(checks)
        got = {int(w[8:10]) - 1: (s, lc) for w, s, lc in
               table.select("window", "status", "lifecycle").iter_rows()}
        assert got == expected, (runs, checks)
        assert [(int(r["since"][8:10]) - 1, int(r["window"][8:10]) - 1)  # type: ignore[index]
                for r in resolved] == expected_resolved


def test_daily_runs_alert_once_then_ongoing_then_resolved() -> None:
    """One new window per run, drift from day 3 to day 6, persistence 2."""
    truth = ["ok", "ok", "warn", "warn", "warn", "warn", "ok", "ok"]
    history: list[pl.DataFrame] = []
    seen = []
    for day, verdict in enumerate(truth):
        table, resolved = _run_state(history, {day: (verdict, False)}, persistence=2)
        seen.append((table["status"][0], table["lifecycle"][0], len(resolved)))
    assert seen == [("ok", None, 0), ("ok", None, 0), ("ok", None, 0), ("warn", "new", 0),
                    ("warn", "ongoing", 0), ("warn", "ongoing", 0), ("ok", None, 1),
                    ("ok", None, 0)]


def test_rerunning_a_run_gives_the_same_decisions() -> None:
    history: list[pl.DataFrame] = []
    _run_state(history, {0: ("warn", False)}, persistence=1)
    first, _ = _run_state(history, {1: ("critical", False)}, persistence=1)
    history.pop()  # the run's own rows are not "earlier runs" when it runs again
    again, _ = _run_state(history, {1: ("critical", False)}, persistence=1)
    assert first.equals(again) and first["lifecycle"].to_list() == ["ongoing"]


def test_runs_without_windows_are_points_of_the_timeline() -> None:
    history: list[pl.DataFrame] = []
    lifecycles = []
    for verdict in ["warn", "warn", "ok"]:
        current = pl.DataFrame({"segment": ["all"], "feature": ["x"], "window": ["all"],
                                "window_status": [verdict], "reason": [None]},
                               schema_overrides={"reason": pl.String})
        previous = (previous_points(pl.concat(history).lazy(), ["segment", "feature"])
                    .collect() if history else None)
        state = apply_state(current, previous, persistence=2)
        lifecycles.append((state.table["status"][0], len(state.resolved)))
        history.append(state.table.select(
            "segment", "feature", "window", "window_status", "status",
            partial=pl.lit(None, pl.Boolean), run_order=pl.lit(len(history), pl.Int64),
            row_order=pl.lit(0, pl.Int64)))
    assert lifecycles == [("ok", 0), ("warn", 0), ("ok", 1)]


def test_partial_window_is_held_with_its_coverage_in_the_reason() -> None:
    rows = pl.DataFrame({"segment": "all", "feature": "x", "window": ["w1", "w2"],
                         "window_status": ["critical", "critical"], "reason": None,
                         "partial": [True, False], "coverage": [0.29, 1.0]},
                        schema_overrides={"reason": pl.String})
    held = apply_state(rows, None, persistence=1).table
    assert held["status"].to_list() == ["insufficient_data", "critical"]
    assert "29%" in held["reason"][0] and held["lifecycle"].to_list() == [None, "new"]
    judged = apply_state(rows, None, persistence=1, hold_partial=False).table
    assert judged["status"].to_list() == ["critical", "critical"]


@given(st.lists(st.lists(verdicts, min_size=1, max_size=6), min_size=2, max_size=4),
       st.integers(1, 3))
def test_series_are_judged_apart(series: list[list[str]], persistence: int) -> None:
    """Several series in one run, their rows interleaved (some never drift): each gets the
    decisions it gets alone; a streak never runs on from one series into the next."""
    rows = pl.DataFrame(
        [{"segment": "all", "feature": f"f{i}", "window": f"w{j}", "window_status": days[j],
          "reason": None}
         for j in range(max(map(len, series))) for i, days in enumerate(series)
         if j < len(days)],
        schema_overrides={"reason": pl.String})
    together = apply_state(rows, None, persistence=persistence)
    for i in range(len(series)):
        alone = apply_state(rows.filter(pl.col("feature") == f"f{i}"), None,
                            persistence=persistence)
        assert together.table.filter(pl.col("feature") == f"f{i}").equals(alone.table)
        assert [r for r in together.resolved if r["feature"] == f"f{i}"] == alone.resolved
