"""Model-output drift: per-example divergences, aggregates, bad input, outputs, demo data."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pydantic import ValidationError
from scipy.special import expit, rel_entr, softmax

import kl_metrics
from pipeline.config import PER_EXAMPLE_METRICS as PER_EXAMPLE
from pipeline.config import ModelsConfig
from pipeline.errors import InputError
from pipeline.formats import MODELS_FILES
from pipeline.measure.models import compare_models, compare_outputs, per_example_metrics
from pipeline.write.documents import ModelsBlock, models_block
from pipeline.write.run_folder import model_tables, write_run_outputs

DATA = Path(__file__).resolve().parents[1] / "data"
CLASSES = ["early", "on_time", "late", "very_late"]
LN2 = math.log(2.0)


def reference(p: np.ndarray, q: np.ndarray) -> dict[str, np.ndarray]:
    """Per-row divergences of probability rows p (current) and q (baseline), in bits."""
    m = (p + q) / 2
    kl, rev = rel_entr(p, q).sum(-1) / LN2, rel_entr(q, p).sum(-1) / LN2
    js = (rel_entr(p, m).sum(-1) + rel_entr(q, m).sum(-1)) / 2 / LN2
    return {"kl": kl, "reverse_kl": rev, "symmetric_kl": kl + rev, "js_divergence": js,
            "js_distance": np.sqrt(np.maximum(js, 0.0))}


def atol(name: str) -> float:
    """Absolute tolerance: a square root turns rounding of JS near 0 (1e-16) into 1e-8."""
    return 1e-7 if name == "js_distance" else 1e-9


def config(**overrides) -> ModelsConfig:
    settings_ = {"baseline": "base.parquet", "current": "cur.parquet", "outputs": "logits",
                 "min_examples": 1} | overrides
    return ModelsConfig(**settings_)


def frame(ids, logits: np.ndarray, **columns) -> pl.DataFrame:
    return pl.DataFrame({"id": ids, "logits": logits.tolist(), **columns})


def pair(n: int = 300, k: int = 4, seed: int = 0, shift: float = 0.7):
    """Baseline and current logits of the same n examples, with day and region columns."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, k)) * 2
    cur = base + rng.normal(scale=shift, size=(n, k))
    start = datetime(2024, 1, 1)
    context = {"ts": [start + timedelta(hours=int(h)) for h in rng.integers(0, 72, n)],
               "region": rng.choice(["EU", "US"], n).tolist()}
    ids = np.arange(n)
    return frame(ids, base, **context), frame(ids, cur, **context), base, cur


logit_rows = arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(2, 5)),
                    elements=st.floats(-30, 30))


# --- per-example metrics ------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(logit_rows, st.floats(0.25, 4.0), st.data())
def test_per_example_logits_equal_rel_entr_and_kl_metrics(s, temperature, data):
    t = data.draw(arrays(np.float64, s.shape, elements=st.floats(-30, 30)))
    got = per_example_metrics(t, s, temperature=temperature)
    p, q = softmax(s / temperature, axis=1), softmax(t / temperature, axis=1)
    want = reference(p, q)
    explicit = kl_metrics.divergences(p, q, metrics=PER_EXAMPLE, base=2, eps=0)
    for name in PER_EXAMPLE:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-7, atol=atol(name))
        np.testing.assert_allclose(got[name], explicit[name], rtol=1e-7, atol=atol(name))


@settings(max_examples=60, deadline=None)
@given(logit_rows, st.data())
def test_logits_and_probabilities_paths_agree(s, data):
    t = data.draw(arrays(np.float64, s.shape, elements=st.floats(-8, 8)))
    s = np.clip(s, -8, 8)  # keeps every probability far from 0, where eps=0 is exact
    from_logits = per_example_metrics(t, s)
    from_probs = per_example_metrics(softmax(t, axis=1), softmax(s, axis=1), kind="probabilities")
    for name in PER_EXAMPLE:
        np.testing.assert_allclose(from_logits[name], from_probs[name], rtol=1e-6,
                                   atol=atol(name))


def test_temperature_divides_logits_and_flattens_divergence():
    rng = np.random.default_rng(1)
    s, t = rng.normal(size=(50, 5)) * 3, rng.normal(size=(50, 5)) * 3
    hot = per_example_metrics(t, s, temperature=4.0)
    scaled = per_example_metrics(t / 4.0, s / 4.0)
    cold = per_example_metrics(t, s)
    for name in PER_EXAMPLE:
        np.testing.assert_allclose(hot[name], scaled[name], rtol=1e-12)
    assert np.all(hot["js_divergence"] < cold["js_divergence"])  # softer outputs agree more


def test_extreme_logits_stay_finite_and_exact():
    # softmax then log would give log(0) = -inf here; log space keeps KL exact.
    s = np.array([[1e4, 0.0, -1e4]])
    t = np.array([[0.0, 1e4, -1e4]])
    got = per_example_metrics(t, s, base=None)
    assert np.isfinite(got["kl"]).all()
    np.testing.assert_allclose(got["kl"], 1e4, rtol=1e-9)  # log p0 - log q0 = 0 - (-1e4)
    np.testing.assert_allclose(got["js_divergence"], math.log(2), rtol=1e-9)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 4)),
              elements=st.floats(-20, 20)), st.data())
def test_multilabel_is_sum_of_binary_divergences(s, data):
    t = data.draw(arrays(np.float64, s.shape, elements=st.floats(-20, 20)))
    got = per_example_metrics(t, s, mode="sigmoid", base=None)
    binary = lambda z: np.stack([expit(z), expit(-z)], axis=-1)  # noqa: E731
    p, q = binary(s), binary(t)
    want = {name: value * LN2 for name, value in reference(p, q).items()}
    for name in ("kl", "reverse_kl", "symmetric_kl", "js_divergence"):
        np.testing.assert_allclose(got[name], want[name].sum(axis=1), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(got["js_distance"],
                               np.sqrt(np.maximum(want["js_divergence"].sum(axis=1), 0.0)),
                               rtol=1e-7, atol=atol("js_distance"))
    # Seed 002: sum of binary symmetric KLs = <sigmoid(s) - sigmoid(t), s - t>.
    closed = ((expit(s) - expit(t)) * (s - t)).sum(axis=1)
    np.testing.assert_allclose(got["symmetric_kl"], closed, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(got["symmetric_kl"], kl_metrics.multilabel_symmetric_kl(s, t),
                               rtol=1e-7, atol=1e-9)
    probs = per_example_metrics(expit(t), expit(s), kind="probabilities", mode="sigmoid",
                                base=None)
    np.testing.assert_allclose(probs["kl"], got["kl"], rtol=1e-6, atol=1e-9)


# --- compare_outputs ----------------------------------------------------------------------
def test_unmatched_ids_are_counted_and_the_rest_compared():
    base, cur, b, c = pair(n=120)
    base = base.filter(pl.col("id") >= 10)             # 10 current ids lack a baseline
    cur = cur.filter(pl.col("id") < 100)               # 20 baseline ids lack a current row
    result = compare_outputs(base, cur, config())
    assert (result.n_matched, result.n_unmatched_baseline, result.n_unmatched_current) == (
        90, 20, 10)
    assert result.summary["n"].sum() == 90
    (warning,) = result.warnings
    assert "20 baseline ids" in warning and "10 current ids" in warning and "90" in warning
    want = reference(softmax(c[10:100], axis=1), softmax(b[10:100], axis=1))
    got = result.per_example.sort("id")
    np.testing.assert_allclose(got["kl"].to_numpy(), want["kl"], rtol=1e-9)


def test_row_order_does_not_matter():
    base, cur, _, _ = pair()
    shuffled = cur.sample(fraction=1.0, shuffle=True, seed=3)
    a = compare_outputs(base, cur, config()).summary.select(pl.col(pl.Float64))
    b = compare_outputs(base, shuffled, config()).summary.select(pl.col(pl.Float64))
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-9)


def test_aggregates_per_window_and_segment_equal_a_numpy_groupby():
    base, cur, b, c = pair(n=500)
    cfg = config(timestamp="ts", period="1d", segments=["region"], top_n=5)
    result = compare_outputs(base, cur, cfg)
    per = reference(softmax(c, axis=1), softmax(b, axis=1))
    days = np.array([t.strftime("%Y-%m-%dT00:00:00") for t in cur["ts"].to_list()])
    regions = cur["region"].to_numpy()
    assert result.summary.height == len(set(zip(days, regions, strict=True))) == 6
    for row in result.summary.iter_rows(named=True):
        mask = (days == row["window"]) & (regions == row["region"])
        assert row["segment"] == f"region={row['region']}" and row["n"] == mask.sum()
        for name in PER_EXAMPLE:
            values = per[name][mask]
            assert row[f"{name}_mean"] == pytest.approx(values.mean(), rel=1e-9)
            for q in (50, 95, 99):
                assert row[f"{name}_p{q}"] == pytest.approx(np.quantile(values, q / 100),
                                                            rel=1e-9)
            assert row[f"{name}_max"] == pytest.approx(values.max(), rel=1e-12)
        flips = softmax(b[mask], axis=1).argmax(1) != softmax(c[mask], axis=1).argmax(1)
        assert row["flip_rate"] == pytest.approx(flips.mean())
        # Of-means metrics: divergences of the average predicted distributions.
        mean_p, mean_q = softmax(c[mask], axis=1).mean(0), softmax(b[mask], axis=1).mean(0)
        of_means = reference(mean_p[None], mean_q[None])
        assert row["kl_of_means"] == pytest.approx(of_means["kl"][0], rel=1e-9)
        assert row["js_distance_of_means"] == pytest.approx(of_means["js_distance"][0],
                                                            rel=1e-9)
        # JS is jointly convex: the mean distribution moves less than the examples do.
        assert row["js_divergence_of_means"] <= row["js_divergence_mean"] + 1e-12
        top = result.examples.filter(window=row["window"], region=row["region"])
        assert top["rank"].to_list() == [1, 2, 3, 4, 5]
        largest = np.sort(per["js_distance"][mask])[::-1][:5]
        np.testing.assert_allclose(top["js_distance"].to_numpy(), largest, rtol=1e-12)


def test_class_table_means_contributions_and_predicted_shares():
    base, cur, b, c = pair(n=400)
    cfg = config(class_names=CLASSES)
    result = compare_outputs(base, cur, cfg)
    classes = result.classes
    p, q = softmax(c, axis=1), softmax(b, axis=1)
    assert classes["class"].to_list() == CLASSES
    np.testing.assert_allclose(classes["current_mean"].to_numpy(), p.mean(0), rtol=1e-12)
    np.testing.assert_allclose(classes["baseline_mean"].to_numpy(), q.mean(0), rtol=1e-12)
    m = (p.mean(0) + q.mean(0)) / 2
    js_terms = (rel_entr(p.mean(0), m) + rel_entr(q.mean(0), m)) / 2 / LN2
    np.testing.assert_allclose(classes["js_contribution"].to_numpy(), js_terms, rtol=1e-9,
                               atol=1e-15)
    kl_terms = rel_entr(p.mean(0), q.mean(0)) / LN2
    np.testing.assert_allclose(classes["kl_contribution"].to_numpy(), kl_terms, rtol=1e-9)
    assert classes["js_contribution"].sum() == pytest.approx(
        result.summary["js_divergence_of_means"].item(), rel=1e-12)
    np.testing.assert_allclose(classes["current_predicted_share"].to_numpy(),
                               np.bincount(p.argmax(1), minlength=4) / len(p))


def test_multilabel_classes_flips_and_predicted_label_sets():
    rng = np.random.default_rng(4)
    b, c = rng.normal(size=(300, 3)) * 2, rng.normal(size=(300, 3)) * 2
    labels = ["spam", "urgent", "promo"]
    result = compare_outputs(frame(np.arange(300), b), frame(np.arange(300), c),
                             config(mode="sigmoid", class_names=labels, top_n=300))
    classes = result.classes
    np.testing.assert_allclose(classes["current_mean"].to_numpy(), expit(c).mean(0))
    np.testing.assert_allclose(classes["baseline_predicted_share"].to_numpy(), (b > 0).mean(0))
    # Per label: the binary JS of the mean rates; they add up to the of-means total.
    mean_p, mean_q = expit(c).mean(0), expit(b).mean(0)
    binary = lambda x: np.stack([x, 1 - x], axis=-1)  # noqa: E731
    js = reference(binary(mean_p), binary(mean_q))["js_divergence"]
    np.testing.assert_allclose(classes["js_contribution"].to_numpy(), js, rtol=1e-9)
    assert result.summary["js_divergence_of_means"].item() == pytest.approx(js.sum())
    assert result.summary["flip_rate"].item() == pytest.approx(((b > 0) != (c > 0)).any(1).mean())
    example = result.examples.sort("id").row(0, named=True)
    assert example["current_class"] == ",".join(np.asarray(labels)[c[0] > 0])
    np.testing.assert_allclose(example["current_probs"], expit(c[0]))


def test_list_column_per_class_columns_and_prefix_agree():
    base, cur, _, _ = pair()
    widen = lambda f: f.with_columns(  # noqa: E731
        pl.col("logits").list.get(j).alias(f"z_{name}") for j, name in enumerate(CLASSES))
    by_list = compare_outputs(base, cur, config(class_names=CLASSES))
    by_columns = compare_outputs(widen(base), widen(cur),
                                 config(outputs=[f"z_{c}" for c in CLASSES]))
    by_prefix = compare_outputs(widen(base), widen(cur), config(outputs=None,
                                                                outputs_prefix="z_"))
    assert by_prefix.classes["class"].to_list() == CLASSES
    for other in (by_columns, by_prefix):
        assert other.summary.drop("segment").equals(by_list.summary.drop("segment"))
        np.testing.assert_allclose(other.classes["js_contribution"].to_numpy(),
                                   by_list.classes["js_contribution"].to_numpy())


def test_status_thresholds_and_insufficient_data():
    base, cur, _, _ = pair(n=200)
    value = compare_outputs(base, cur, config()).summary["js_distance_mean"].item()
    statuses = {
        (value / 2, value * 2, 1): "warn",
        (value / 3, value / 2, 1): "critical",
        (value * 2, value * 3, 1): "ok",
        (value / 3, value / 2, 201): "insufficient_data",
    }
    for (warn, critical, min_examples), status in statuses.items():
        cfg = config(warn=warn, critical=critical, min_examples=min_examples)
        summary = compare_outputs(base, cur, cfg).summary
        assert summary.select("status", "metric", "warn_threshold").row(0) == (
            status, "js_distance_mean", warn)
        assert summary["value"].item() == pytest.approx(value)


def test_write_outputs_and_json_block(tmp_path):
    base, cur, _, _ = pair(n=200)
    result = compare_outputs(base, cur, config(warn=0.01, critical=0.5, segments=["region"]))
    block = models_block(result)
    write_run_outputs(tmp_path, model_tables(result), {"models": block})
    for name, file in MODELS_FILES.items():
        table = {"models": result.summary, "classes": result.classes,
                 "examples": result.examples}[name]
        assert pl.read_parquet(tmp_path / file).equals(table)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*MODELS_FILES.values(), "alerts.json"])
    text = json.dumps(block, allow_nan=False)
    ModelsBlock.model_validate(json.loads(text))
    assert json.loads(text)["summary"] == {"total": 2, "ok": 0, "warn": 2, "critical": 0,
                                           "insufficient_data": 0}
    alert = block["alerts"][0]
    assert alert["status"] == "warn" and len(alert["top_classes"]) == 3
    assert alert["segment"].startswith("region=") and "region" not in alert  # labels only
    top = alert["top_examples"]
    assert len(top) == 3 and isinstance(top[0]["id"], str)
    assert top[0]["value"] >= top[1]["value"] >= top[2]["value"]  # block["top_by"], ranked
    assert alert["value"] >= block["alerts"][1]["value"]  # most severe, then largest first


def test_infinite_kl_becomes_null_with_a_reason():
    # A class the baseline model gives probability exactly 0: KL(current || baseline) = inf.
    base = pl.DataFrame({"id": [1, 2], "p": [[1.0, 0.0], [0.5, 0.5]]})
    cur = pl.DataFrame({"id": [1, 2], "p": [[0.5, 0.5], [0.5, 0.5]]})
    result = compare_outputs(base, cur, config(outputs="p", kind="probabilities",
                                               metric="kl_max"))
    assert result.summary["kl_max"].item() == math.inf
    assert result.summary["status"].item() == "critical"
    block = models_block(result)
    json.dumps(block, allow_nan=False)
    alert = block["alerts"][0]
    assert alert["value"] is None and "inf" in alert["null_reasons"]["value"]
    bounded = compare_outputs(base, cur, config(outputs="p", kind="probabilities", eps=1e-6))
    assert math.isfinite(bounded.summary["kl_max"].item())


# --- bad input: one line, naming file, column and rows ------------------------------------
def _logits(n=5, k=3):
    return np.arange(n * k, dtype=float).reshape(n, k) / 10


def _bad_cases():
    ok = frame(list(range(5)), _logits())
    probs = pl.DataFrame({"id": range(5), "p_a": [0.2] * 5, "p_b": [0.8] * 5})
    prob_cfg = {"outputs": None, "outputs_prefix": "p_", "kind": "probabilities"}
    nan = _logits()
    nan[3, 1] = np.nan
    return {
        "duplicate id": (ok.with_columns(id=pl.Series([0, 1, 2, 2, 4])), ok, {},
                         ["base.parquet", "'id'", "unique", "id 2"]),
        "null id": (ok.with_columns(id=pl.Series([0, None, 2, 3, 4])), ok, {},
                    ["'id'", "null id"]),
        "NaN logit": (ok, frame(list(range(5)), nan), {},
                      ["cur.parquet", "'logits'", "1 row (id 3)", "NaN"]),
        "inf in a class column": (
            probs, probs.with_columns(p_b=pl.Series([0.8, 0.8, math.inf, 0.8, 0.8])),
            prob_cfg, ["cur.parquet", "'p_b'", "id 2", "inf"]),
        "row sum not 1": (
            probs.with_columns(p_a=pl.Series([0.2, 0.3, 0.2, 0.4, 0.2])), probs, prob_cfg,
            ["base.parquet", "2 rows (id 1, 3)", "sum to 1", "1.1"]),
        "probability above 1": (
            probs, probs.with_columns(p_a=pl.Series([0.2, 0.2, 0.2, 0.2, 1.5])),
            {**prob_cfg, "mode": "sigmoid"}, ["cur.parquet", "'p_a'", "id 4", "[0, 1]", "1.5"]),
        "unequal class counts": (ok, frame(list(range(5)), _logits(k=4)), {},
                                 ["'logits'", "3 classes", "4"]),
        "ragged lists": (ok, ok.with_columns(logits=pl.Series([[0.0, 1.0, 2.0]] * 4 + [[1.0]])),
                         {}, ["cur.parquet", "'logits'", "1 row (id 4)", "number of outputs"]),
        "null output vector": (ok.with_columns(logits=pl.Series([[0.0, 1.0, 2.0]] * 4 + [None])),
                               ok, {}, ["base.parquet", "id 4", "null outputs"]),
        "empty": (ok.clear(), ok, {}, ["base.parquet", "no rows"]),
        "missing column": (ok.rename({"logits": "scores"}), ok, {},
                           ["base.parquet", "'logits'", "missing", "scores"]),
        "text outputs": (ok.with_columns(pl.col("logits").cast(pl.List(pl.String))), ok, {},
                         ["base.parquet", "'logits'", "list of numbers"]),
        "no common id": (ok, ok.with_columns(pl.col("id") + 100), {},
                         ["'id'", "no 'id' value is in both files"]),
        "id types differ": (ok, ok.with_columns(pl.col("id").cast(pl.String)), {},
                            ["'id'", "types differ", "cast"]),
        "one class softmax": (frame(list(range(5)), _logits(k=1)), frame(list(range(5)),
                              _logits(k=1)), {}, ["'logits'", "sigmoid", "at least 2"]),
        "prefix columns differ": (probs, probs.with_columns(p_c=pl.lit(0.0)), prob_cfg,
                                  ["'p_'", "same", "p_c"]),
        "timestamp not temporal": (ok.with_columns(ts=pl.lit(20240101)), ok,
                                   {"timestamp": "ts", "period": "1d"},
                                   ["base.parquet", "'ts'", "a datetime, a date or ISO-8601"]),
        "timestamp not ISO text": (ok, ok.with_columns(ts=pl.lit("tuesday")),
                                   {"timestamp": "ts", "period": "1d"},
                                   ["cur.parquet", "'ts'", "not ISO-8601", "'tuesday'"]),
    }


@pytest.mark.parametrize("case", list(_bad_cases()))
def test_bad_input_is_one_line_input_error(case):
    base, cur, overrides, expected = _bad_cases()[case]
    with pytest.raises(InputError) as caught:
        compare_outputs(base, cur, config(**overrides))
    message = str(caught.value)
    assert "\n" not in message
    for text in expected:
        assert text in message, (text, message)


def test_missing_file_names_it(tmp_path):
    cfg = config(baseline=str(tmp_path / "nope.parquet"), current=str(tmp_path / "nope.parquet"))
    with pytest.raises(InputError, match=r"nope\.parquet.*not found"):
        compare_models(cfg)


@pytest.mark.parametrize("overrides, match", [
    ({"outputs_prefix": "p_"}, "exactly one of outputs"),
    ({"metric": "js_mean"}, "unknown metric"),
    ({"warn": 0.3, "critical": 0.2}, "must be < models.critical"),
    ({"kind": "probabilities", "temperature": 2.0}, "temperature"),
    ({"period": "1d"}, "needs timestamp"),
    ({"timestamp": "ts", "period": "one day"}, "not a duration"),
    ({"colour": "red"}, "Extra inputs"),
])
def test_config_rejects(overrides, match):
    with pytest.raises(ValidationError, match=match):
        config(**overrides)


# --- demo data ----------------------------------------------------------------------------
def demo_config(**overrides) -> ModelsConfig:
    settings_ = {"baseline": str(DATA / "models_v1.parquet"),
                 "current": str(DATA / "models_v2.parquet"), "id_column": "flight_id",
                 "outputs": "logits", "class_names": CLASSES,
                 "timestamp": "scheduled_departure", "period": "1w", "segments": ["origin"]}
    return ModelsConfig(**(settings_ | overrides))


def test_demo_models_drift_end_to_end():
    logits = compare_models(demo_config())
    probs = compare_models(demo_config(outputs=None, outputs_prefix="p_",
                                       kind="probabilities", class_names=None))
    assert logits.n_matched > 18_000 and logits.n_unmatched_baseline > 0
    assert logits.n_unmatched_current > 0
    assert logits.summary.height == 9  # three weekly windows x three airports
    assert set(logits.summary["status"]) == {"warn"}  # the retrained model moved, moderately
    assert probs.classes["class"].to_list()[:4] == CLASSES
    # Probabilities were stored as float32: the two paths agree to that precision.
    np.testing.assert_allclose(probs.summary["js_distance_mean"].to_numpy(),
                               logits.summary["js_distance_mean"].to_numpy(), rtol=1e-4)
    # v2 (refitted on June) expects fewer on-time arrivals than v1 (refitted on January) ...
    on_time = logits.classes.filter(pl.col("class") == "on_time")
    assert (on_time["current_mean"] < on_time["baseline_mean"]).all()
    # ... but at JFK the class mix barely moves while single predictions do: the case
    # the of-means metric misses and the per-example mean catches.
    jfk = logits.summary.filter(origin="JFK")
    assert (jfk["js_distance_of_means"] < 0.5 * jfk["js_distance_mean"]).all()
    labels = compare_models(demo_config(outputs="label_logits", mode="sigmoid",
                                        class_names=["dep_late", "arr_late", "slow_air_time"]))
    slow = labels.classes.filter(pl.col("class") == "slow_air_time")
    assert (slow["current_mean"] < slow["baseline_mean"]).all()  # winter headwinds are gone
