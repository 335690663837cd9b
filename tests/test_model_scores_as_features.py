"""Model outputs through the ordinary feature path: scores with fixed [0, 1] bins, the
predicted class as a categorical feature (the demo classifiers, v1 as baseline, v2 current)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.spatial.distance import jensenshannon

from pipeline.config import load_config
from pipeline.run import run_drift

DATA = Path(__file__).parents[1] / "data"
SCORES = ["p_early", "p_on_time", "p_late", "p_very_late"]
EDGES = [round(0.1 * i, 1) for i in range(11)]


def scores_table(path: Path) -> pl.DataFrame:
    """Score columns plus the predicted class (argmax), as a feature table."""
    names = pl.Series([s.removeprefix("p_") for s in SCORES])
    table = pl.read_parquet(path, columns=["flight_id", *SCORES])
    predicted = np.argmax(table.select(SCORES).to_numpy(), axis=1)
    return table.with_columns(predicted_class=names.gather(predicted))


@pytest.fixture(scope="module")
def score_run(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("scores")
    tables = {}
    for name in ("models_v1", "models_v2"):
        tables[name] = scores_table(DATA / f"{name}.parquet")
        tables[name].write_parquet(root / f"{name}.parquet")
    config = load_config(None, {
        "input.baseline": str(root / "models_v1.parquet"),
        "input.current": str(root / "models_v2.parquet"),
        "input.exclude": ["flight_id"], "profile.fixed_edges": dict.fromkeys(SCORES, EDGES),
        "output.dir": str(root / "runs"), "output.run_id": "scores"})
    return run_drift(config), tables


def test_scores_use_the_fixed_unit_bins(score_run) -> None:
    result, _ = score_run
    row = result.drift.filter(pl.col("feature") == "p_late").row(0, named=True)
    assert row["kind"] == "numeric"
    finite = sorted({b["lower"] for b in row["bins"]} - {None, -np.inf})
    assert finite == EDGES  # the ten unit bins plus the open tails, not baseline quantiles


def test_predicted_class_drift_equals_an_independent_js(score_run) -> None:
    result, tables = score_run
    row = result.drift.filter(pl.col("feature") == "predicted_class").row(0, named=True)
    assert row["kind"] == "categorical"
    classes = sorted(set(tables["models_v1"]["predicted_class"]) |
                     set(tables["models_v2"]["predicted_class"]))
    counts = [tables[n]["predicted_class"].value_counts().to_dict(as_series=False)
              for n in ("models_v2", "models_v1")]
    current, baseline = ([dict(zip(c["predicted_class"], c["count"], strict=True)).get(k, 0)
                          for k in classes] for c in counts)
    # eps smoothing moves the value by far less than 1e-4 with thousands of rows per class
    assert row["js_distance"] == pytest.approx(jensenshannon(current, baseline, base=2),
                                               abs=1e-4)


def test_the_shifted_model_version_is_flagged(score_run) -> None:
    result, _ = score_run
    statuses = dict(zip(result.drift["feature"], result.drift["status"], strict=True))
    assert statuses["predicted_class"] in {"warn", "critical"}
    assert any(statuses[s] in {"warn", "critical"} for s in SCORES)
