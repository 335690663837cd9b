"""k1/k2/k3 KL estimates from log-prob samples: Gaussian truths, coverage, groups, bad input."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError
from scipy.stats import norm

from kl_metrics import kl_estimate
from pipeline.config import EstimateConfig, ModelsConfig
from pipeline.errors import InputError
from pipeline.measure.estimate import estimate_frame
from pipeline.measure.models import compare_models
from pipeline.write.documents import EstimatesBlock, dumps_json, estimates_block

DATA = Path(__file__).resolve().parents[1] / "data"


def config(**overrides) -> EstimateConfig:
    return EstimateConfig(**({"source": "samples.parquet"} | overrides))


def gaussian_samples(mu: float, n: int, seed: int, groups: int = 1) -> pl.DataFrame:
    """x ~ Q = N(0, 1) with log Q(x) and log P(x) for P = N(mu, 1), in `groups` replicates."""
    x = np.random.default_rng(seed).standard_normal(n * groups)
    return pl.DataFrame({"logq": norm.logpdf(x), "logp": norm.logpdf(x, loc=mu),
                         "rep": np.repeat(np.arange(groups), n).astype(str)})


# Seed 003: q = N(0,1); true KL 0.005 for p = N(0.1,1) and 0.5 for p = N(1,1). With
# log r = mu x - mu^2/2, E[k2] = E[(log r)^2]/2 = (mu^2 + mu^4/4)/2: 0.625 for mu = 1.
@pytest.mark.parametrize("mu, truth, k2_mean", [(0.1, 0.005, 0.005 + 0.1**4 / 8),
                                                (1.0, 0.5, 0.625)])
def test_gaussian_estimates_cover_the_true_kl(mu, truth, k2_mean):
    samples = gaussian_samples(mu, 200_000, seed=7)
    for direction in ("forward", "reverse"):  # equal variances: KL(P||Q) = KL(Q||P)
        for estimator in ("k1", "k3"):
            row = estimate_frame(samples, config(estimator=estimator, direction=direction,
                                                 level=0.99)).row(0, named=True)
            assert row["ci_low"] <= truth <= row["ci_high"], (direction, estimator, row)
            assert row["n"] == 200_000 and row["estimator"] == estimator
    row = estimate_frame(samples, config(estimator="k2", level=0.99)).row(0, named=True)
    assert row["ci_low"] <= k2_mean <= row["ci_high"]
    if mu == 1.0:
        assert row["ci_low"] > truth  # k2 is biased once P and Q differ (bias/true 0.25)


@pytest.mark.parametrize("mu, truth, stdev_over_true", [
    (0.1, 0.005, {"k1": 20.0, "k2": 1.42, "k3": 1.42}),
    (1.0, 0.5, {"k1": 2.0, "k2": 1.73, "k3": 1.7}),
])
def test_estimator_spread_matches_the_seed_table(mu, truth, stdev_over_true):
    n = 100_000
    row = estimate_frame(gaussian_samples(mu, n, seed=11), config()).row(0, named=True)
    for k, ratio in stdev_over_true.items():
        sample_stdev = row[f"{k}_stderr"] * math.sqrt(n)
        assert sample_stdev / truth == pytest.approx(ratio, rel=0.05), k
    assert row["k3_stderr"] < row["k1_stderr"]  # the control variate pays off


def test_interval_coverage_is_roughly_nominal():
    # 400 independent data sets of 400 samples in one call, one segment each.
    table = estimate_frame(gaussian_samples(1.0, 400, seed=3, groups=400),
                           config(segments=["rep"], level=0.9))
    covered = ((table["ci_low"] <= 0.5) & (table["ci_high"] >= 0.5)).mean()
    assert table.height == 400
    assert 0.86 <= covered <= 0.94  # binomial sd 0.015 around 0.90


def test_groups_equal_kl_estimate_on_each_group():
    rng = np.random.default_rng(5)
    n = 3000
    logq = np.log(rng.dirichlet(np.ones(6), n).max(axis=1))
    logp = logq + rng.normal(0.0, 0.3, n) - 0.05
    start = datetime(2024, 3, 1)
    frame = pl.DataFrame({
        "logq": logq, "logp": np.minimum(logp, 0.0),
        "ts": [start + timedelta(hours=int(h)) for h in rng.integers(0, 24 * 14, n)],
        "model": rng.choice(["a", "b", "c"], n),
    })
    cfg = config(timestamp="ts", period="1w", segments=["model"], direction="reverse",
                 estimator="k1", level=0.8)
    table = estimate_frame(frame, cfg)
    weeks = frame.select(pl.col("ts").dt.truncate("1w").dt.strftime("%Y-%m-%dT%H:%M:%S"))
    labels = np.array(weeks.to_series().to_list())
    assert table.height == len(set(zip(labels, frame["model"], strict=True)))
    for row in table.iter_rows(named=True):
        mask = (labels == row["window"]) & (frame["model"].to_numpy() == row["model"])
        assert row["n"] == mask.sum() and row["segment"] == f"model={row['model']}"
        for k in ("k1", "k2", "k3"):
            ref = kl_estimate(frame["logq"].to_numpy()[mask], frame["logp"].to_numpy()[mask],
                              estimator=k, direction="reverse")
            assert row[k] == pytest.approx(ref.value, rel=1e-9, abs=1e-12)
            assert row[f"{k}_stderr"] == pytest.approx(ref.stderr, rel=1e-9)
        ref = kl_estimate(frame["logq"].to_numpy()[mask], frame["logp"].to_numpy()[mask],
                          estimator="k1", direction="reverse")
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(
            tuple(ref.confidence_interval(0.8)), rel=1e-9)


def test_per_sequence_sums_log_probs_first():
    rng = np.random.default_rng(2)
    lengths = rng.integers(1, 8, 200)
    seq = np.repeat(np.arange(200), lengths)
    logq = -rng.exponential(1.0, len(seq))
    logp = logq - rng.exponential(0.1, len(seq)) + 0.05
    frame = pl.DataFrame({"seq": seq, "logq": logq, "logp": np.minimum(logp, 0.0)})
    row = estimate_frame(frame, config(sequence_id="seq", per="sequence")).row(0, named=True)
    sum_q = np.bincount(seq, weights=logq)
    sum_p = np.bincount(seq, weights=frame["logp"].to_numpy())
    ref = kl_estimate(sum_q, sum_p, estimator="k3")
    assert (row["n"], row["n_tokens"]) == (200, len(seq))
    assert row["value"] == pytest.approx(ref.value, rel=1e-9)
    assert row["stderr"] == pytest.approx(ref.stderr, rel=1e-9)
    tokens = estimate_frame(frame, config(sequence_id="seq")).row(0, named=True)
    assert tokens["n"] == tokens["n_tokens"] == len(seq)
    assert tokens["value"] != pytest.approx(row["value"])
    # A sequence belongs to the window of its first token, even if it ends in the next one.
    start = datetime(2024, 1, 1, 23, 59)
    timed = frame.with_columns(ts=pl.Series([start + timedelta(seconds=int(i)) for i in
                                             range(len(seq))]))
    days = estimate_frame(timed, config(sequence_id="seq", per="sequence", timestamp="ts",
                                        period="1d"))
    first_of_day2 = int(np.argmax(timed["ts"].dt.day().to_numpy() == 2))
    n_day1 = len(np.unique(seq[:first_of_day2]))  # every sequence with a day-1 token
    assert seq[first_of_day2] == seq[first_of_day2 - 1]  # this seed splits one over midnight
    assert days["window"].to_list() == ["2024-01-01T00:00:00", "2024-01-02T00:00:00"]
    assert days["n"].to_list() == [n_day1, 200 - n_day1]
    assert days["n_tokens"].sum() == len(seq)


def test_single_sample_group_has_no_stderr():
    frame = pl.DataFrame({"logq": [-1.0, -2.0, -0.5], "logp": [-1.5, -1.0, -0.7],
                          "g": ["a", "a", "b"]})
    table = estimate_frame(frame, config(segments=["g"]))
    single = table.filter(g="b").row(0, named=True)
    assert single["n"] == 1 and single["stderr"] is None and single["ci_low"] is None
    assert single["value"] == pytest.approx(math.expm1(-0.2) + 0.2)  # k3 with log r = -0.2
    block = EstimatesBlock.model_validate(json.loads(dumps_json(
        estimates_block(table, config(segments=["g"])))))
    assert [(r.segment, r.n, r.stderr) for r in block.rows] == [
        ("g=a", 2, pytest.approx(table["stderr"][0])), ("g=b", 1, None)]
    assert (block.estimator, block.base, block.files) == (
        "k3", "e", {"estimates": "estimates.parquet"})


def test_timestamp_without_period_labels_windows_by_value():
    frame = pl.DataFrame({"logq": [-1.0, -2.0, -0.5], "logp": [-1.5, -1.0, -0.7],
                          "batch": ["b2", None, "b1"]})
    table = estimate_frame(frame, config(timestamp="batch"))
    # As in drift.parquet: the value as the label, rows without one in "__missing__".
    assert table["window"].to_list() == ["__missing__", "b1", "b2"]
    assert table["n"].to_list() == [1, 1, 1]


def test_positive_log_densities_need_the_densities_flag():
    frame = pl.DataFrame({"logq": [0.9, -0.2], "logp": [1.1, -0.1]})
    with pytest.raises(InputError, match="densities"):
        estimate_frame(frame, config())
    assert estimate_frame(frame, config(densities=True))["n"].item() == 2


def _bad_cases():
    ok = pl.DataFrame({"logq": [-1.0, -2.0, -0.5, -0.1], "logp": [-1.5, -1.0, -0.7, -0.2],
                       "seq": ["s1", "s1", "s2", "s2"], "g": ["a", "a", "b", "b"]})
    return {
        "NaN logq": (ok.with_columns(logq=pl.Series([-1.0, math.nan, -0.5, -0.1])), {},
                     ["'logq'", "1 row (row 1)", "NaN"]),
        "-inf logp": (ok.with_columns(logp=pl.Series([-1.0, -1.0, -math.inf, -math.inf])), {},
                      ["'logp'", "2 rows (row 2, 3)", "infinite"]),
        "null logp": (ok.with_columns(logp=pl.Series([-1.0, None, -0.5, -0.1])), {},
                      ["'logp'", "row 1", "null"]),
        "positive log-prob": (ok.with_columns(logq=pl.Series([-1.0, 0.5, -0.5, 2.0])), {},
                              ["'logq'", "2 rows (row 1, 3)", "> 0", "losses"]),
        "empty": (ok.clear(), {}, ["samples.parquet", "no rows"]),
        "missing column": (ok.drop("logp"), {}, ["'logp'", "missing"]),
        "text column": (ok.with_columns(pl.col("logq").cast(pl.String)), {},
                        ["'logq'", "expected numbers"]),
        "null sequence id": (ok.with_columns(seq=pl.Series(["s1", None, "s2", "s2"])),
                             {"sequence_id": "seq", "per": "sequence"},
                             ["'seq'", "row 1", "null sequence id"]),
        "sequence spans segments": (ok.with_columns(g=pl.Series(["a", "b", "b", "b"])),
                                    {"sequence_id": "seq", "per": "sequence", "segments": ["g"]},
                                    ["'g'", "seq s1", "one segment"]),
        "timestamp not ISO text": (ok, {"timestamp": "g", "period": "1d"},
                                   ["'g'", "4 timestamp value(s) are not ISO-8601", "'a'"]),
        "timestamp not temporal": (ok.with_columns(t=pl.lit(3)), {"timestamp": "t",
                                                                 "period": "1d"},
                                   ["'t'", "must be a datetime, a date or ISO-8601 text"]),
    }


@pytest.mark.parametrize("case", list(_bad_cases()))
def test_bad_input_is_one_line_input_error(case):
    frame, overrides, expected = _bad_cases()[case]
    with pytest.raises(InputError) as caught:
        estimate_frame(frame, config(**overrides))
    message = str(caught.value)
    assert "\n" not in message and "samples.parquet" in message
    for text in expected:
        assert text in message, (text, message)


@pytest.mark.parametrize("overrides, match", [
    ({"per": "sequence"}, "required with per = 'sequence'"),
    ({"level": 1.0}, "less than 1"),
    ({"estimator": "k4"}, "k1"),
    ({"period": "1d"}, "needs timestamp"),
    ({"period": "0d", "timestamp": "ts"}, "not a duration"),
])
def test_config_rejects(overrides, match):
    with pytest.raises(ValidationError, match=match):
        config(**overrides)


def test_demo_estimate_covers_the_exact_mean_kl():
    """Samples from v2 scored by v1: the forward estimate is E_x KL(v2(.|x) || v1(.|x))."""
    source = str(DATA / "model_logprobs.parquet")
    estimate = estimate_frame(pl.scan_parquet(source), config(source=source)).row(0, named=True)
    exact = compare_models(ModelsConfig(
        baseline=str(DATA / "models_v1.parquet"), current=str(DATA / "models_v2.parquet"),
        id_column="flight_id", outputs="logits", base="e"))
    truth = exact.summary["kl_mean"].item()
    assert estimate["n"] == exact.n_matched
    assert estimate["ci_low"] <= truth <= estimate["ci_high"]
    assert estimate["k3_stderr"] < estimate["k1_stderr"]
