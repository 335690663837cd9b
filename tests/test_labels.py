"""Window and segment labels shared by drift.parquet, models.parquet and estimates.parquet."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
import pytest

from pipeline.labels import segment_label_expr, window_label_expr
from pipeline.windows import check_period, timestamp_expr, window_start_expr


def labels(frame: pl.DataFrame, expr: pl.Expr) -> list[str]:
    # with_columns broadcasts a literal label ("all") to every row, as the tables do.
    return frame.with_columns(expr)[expr.meta.output_name()].to_list()


def test_window_labels_by_type() -> None:
    naive = pl.DataFrame({"window": [datetime(2024, 6, 1, 13, 5), None]})
    aware = naive.with_columns(pl.col("window").dt.replace_time_zone("Europe/Paris"))
    days = pl.DataFrame({"window": [date(2024, 6, 1), None]})
    text = pl.DataFrame({"window": ["batch-7", None]})
    assert labels(naive, window_label_expr(naive.schema["window"])) == [
        "2024-06-01T13:05:00", "__missing__"]
    assert labels(aware, window_label_expr(aware.schema["window"])) == [
        "2024-06-01T13:05:00+02:00", "__missing__"]
    assert labels(days, window_label_expr(pl.Date)) == ["2024-06-01", "__missing__"]
    assert labels(text, window_label_expr(pl.String)) == ["batch-7", "__missing__"]
    assert labels(text, window_label_expr(None)) == ["all", "all"]


def test_raw_windows_start_at_period_boundaries_or_keep_the_value() -> None:
    rows = pl.DataFrame({"ts": [datetime(2013, 7, 3, 9), datetime(2013, 7, 8, 1), None]})
    dtype = rows.schema["ts"]

    def raw_labels(period: str | None) -> list[str]:
        values, _ = timestamp_expr("ts", dtype, period=period)
        return labels(rows, window_label_expr(dtype, window_start_expr(values, period)))

    assert raw_labels("1w") == [
        "2013-07-01T00:00:00", "2013-07-08T00:00:00", "__missing__"]  # weeks start Monday
    assert raw_labels(None) == ["2013-07-03T09:00:00", "2013-07-08T01:00:00", "__missing__"]
    assert labels(rows, window_label_expr(None)) == ["all"] * 3
    starts = rows.select(window_start_expr("ts", "1d"))["window"]
    assert starts.dtype == dtype and starts[0] == datetime(2013, 7, 3)


def test_segment_labels() -> None:
    rows = pl.DataFrame({"region": ["EU", None], "v{}": [2, 3]})
    assert labels(rows, segment_label_expr(["region", "v{}"])) == [
        "region=EU, v{}=2", "region=null, v{}=3"]
    assert labels(rows, segment_label_expr([])) == ["all", "all"]


@pytest.mark.parametrize("period", ["1d", "12h", "1w", "1mo", "1d12h", "3q", "90s"])
def test_valid_periods(period: str) -> None:
    assert check_period(period) == period


@pytest.mark.parametrize("period", ["", "0d", "0d0h", "1 day", "1x", "-1d", "d", "2i"])
def test_invalid_periods(period: str) -> None:
    with pytest.raises(ValueError, match="not a duration such as '1d'"):
        check_period(period)
