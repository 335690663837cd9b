"""kl_metrics.logits: log-space divergences of softmax / sigmoid outputs (seeds 002, 004)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import expit, rel_entr, softmax
from scipy.special import log_softmax as scipy_log_softmax

import kl_metrics

LN2 = math.log(2)
finite_logits = st.floats(-30, 30)


@st.composite
def logit_pairs(draw, max_rows=4, max_classes=6):
    shape = (draw(st.integers(1, max_rows)), draw(st.integers(1, max_classes)))
    return tuple(draw(arrays(np.float64, shape, elements=finite_logits)) for _ in range(2))


temperatures = st.sampled_from([0.25, 1.0, 3.0])


@settings(max_examples=50, deadline=None)
@given(logit_pairs(), temperatures)
def test_log_softmax_matches_scipy_and_temperature_scales(pair, temperature):
    z, _ = pair
    got = kl_metrics.log_softmax(z, temperature=temperature)
    np.testing.assert_allclose(got, scipy_log_softmax(z / temperature, axis=-1), atol=1e-13)
    np.testing.assert_allclose(np.exp(got).sum(-1), 1.0, rtol=1e-13)
    np.testing.assert_allclose(kl_metrics.log_softmax(z.T, axis=0, temperature=temperature),
                               got.T, atol=1e-13)


@settings(max_examples=60, deadline=None)
@given(logit_pairs(), temperatures)
def test_softmax_divergences_match_probability_references(pair, temperature):
    s, t = pair
    p, q = softmax(s / temperature, axis=-1), softmax(t / temperature, axis=-1)
    d = kl_metrics.divergences_from_logits(s, t, temperature=temperature)
    np.testing.assert_allclose(d["kl"], rel_entr(p, q).sum(-1), rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(d["reverse_kl"], rel_entr(q, p).sum(-1), rtol=1e-9, atol=1e-13)
    m = (p + q) / 2  # (scipy's jensenshannon gives NaN for nearly equal p, q)
    js = 0.5 * (rel_entr(p, m) + rel_entr(q, m)).sum(-1)
    np.testing.assert_allclose(d["js_divergence"], js, rtol=1e-9, atol=1e-13)
    # seed 002: symmetric KL = <softmax(s) - softmax(t), s - t> of the tempered logits
    inner = ((p - q) * (s - t) / temperature).sum(-1)
    np.testing.assert_allclose(d["symmetric_kl"], inner, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(d["symmetric_kl"], d["kl"] + d["reverse_kl"], rtol=1e-12,
                               atol=1e-15)
    # the single-metric functions are the same computation
    np.testing.assert_array_equal(kl_metrics.kl_from_logits(s, t, temperature=temperature),
                                  d["kl"])
    np.testing.assert_array_equal(
        kl_metrics.symmetric_kl_from_logits(s, t, temperature=temperature), d["symmetric_kl"])
    np.testing.assert_array_equal(kl_metrics.js_from_logits(s, t, temperature=temperature),
                                  d["js_divergence"])
    np.testing.assert_array_equal(kl_metrics.kl_from_logits(t, s, temperature=temperature),
                                  d["reverse_kl"])


@settings(max_examples=60, deadline=None)
@given(logit_pairs(), temperatures)
def test_multilabel_is_the_sum_of_binary_divergences(pair, temperature):
    s, t = pair
    a, b = expit(s / temperature), expit(t / temperature)
    # per label the distribution (sigma(z), sigma(-z)); 1 - sigma(z) would lose digits
    binary = kl_metrics.divergences(
        np.stack([a, expit(-s / temperature)], -1), np.stack([b, expit(-t / temperature)], -1),
        metrics=kl_metrics.LOGIT_METRICS, eps=0,
    )
    got = kl_metrics.divergences_from_logits(s, t, multilabel=True, temperature=temperature)
    for name in kl_metrics.LOGIT_METRICS:
        np.testing.assert_allclose(got[name], binary[name].sum(-1), rtol=1e-7, atol=1e-10)
    # seed 002: sum_j (sigma(s_j) - sigma(t_j)) (s_j - t_j) with tempered logits
    inner = ((a - b) * (s - t) / temperature).sum(-1)
    sym = kl_metrics.multilabel_symmetric_kl(s, t, temperature=temperature)
    np.testing.assert_allclose(sym, inner, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(sym, got["symmetric_kl"])
    np.testing.assert_array_equal(
        kl_metrics.multilabel_kl_from_logits(s, t, temperature=temperature), got["kl"])


@settings(max_examples=30, deadline=None)
@given(logit_pairs(), st.floats(0.1, 10))
def test_temperature_is_scaling_the_logits(pair, temperature):
    s, t = pair
    hot = kl_metrics.divergences_from_logits(s, t, temperature=temperature)
    scaled = kl_metrics.divergences_from_logits(s / temperature, t / temperature)
    for name in hot:
        np.testing.assert_allclose(hot[name], scaled[name], rtol=1e-12, atol=1e-15)


def test_extreme_logits_are_finite_and_exact():
    s = np.array([1e4, 0.0, -1e4])
    t = np.array([0.0, 1e4, -1e4])
    d = kl_metrics.divergences_from_logits(s, t, metrics=("kl", "reverse_kl", "symmetric_kl",
                                                          "js_divergence", "js_distance"))
    assert d["kl"] == pytest.approx(1e4, rel=1e-12)  # log p0 - log q0 = 0 - (-1e4)
    assert d["reverse_kl"] == pytest.approx(1e4, rel=1e-12)
    assert d["symmetric_kl"] == pytest.approx(2e4, rel=1e-12)
    assert d["js_divergence"] == pytest.approx(LN2, rel=1e-12)
    assert np.isfinite(kl_metrics.log_softmax(s)).all()
    # per label: KL(Bern(1) || Bern(sigma(-1e4))) = -log sigma(-1e4) = 1e4 (+ e^-1e4)
    multi = kl_metrics.divergences_from_logits([1e4, 5.0], [-1e4, 5.0], multilabel=True)
    assert multi["kl"] == pytest.approx(1e4, rel=1e-12)
    assert multi["symmetric_kl"] == pytest.approx(2e4, rel=1e-12)
    assert multi["js_divergence"] == pytest.approx(LN2, rel=1e-12)


def test_equal_logits_up_to_a_shift_have_zero_divergence():
    s = np.array([[3.0, -2.0, 0.5], [100.0, 90.0, -50.0]])
    d = kl_metrics.divergences_from_logits(s, s + 7.5, metrics=("kl", "js_divergence"))
    np.testing.assert_allclose(d["kl"], 0.0, atol=1e-14)
    np.testing.assert_allclose(d["js_divergence"], 0.0, atol=1e-14)


def test_bits_and_broadcasting():
    rng = np.random.default_rng(2)
    s, t = rng.normal(size=(4, 3, 5)) * 3, rng.normal(size=(4, 1, 5)) * 3
    nats = kl_metrics.divergences_from_logits(s, t)
    bits = kl_metrics.divergences_from_logits(s, t, base=2)
    for name in nats:
        np.testing.assert_allclose(bits[name], nats[name] / LN2, rtol=1e-13)
        for i in range(4):
            for j in range(3):
                one = kl_metrics.divergences_from_logits(s[i, j], t[i, 0], metrics=name)[name]
                assert nats[name][i, j] == pytest.approx(one, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: kl_metrics.kl_from_logits([0.0, np.nan], [0.0, 1.0]), "s contains NaN"),
        (lambda: kl_metrics.kl_from_logits([0.0, 1.0], [np.inf, 1.0]), "t contains infinite"),
        (lambda: kl_metrics.log_softmax([1.0, 2.0], temperature=0), "temperature"),
        (lambda: kl_metrics.log_softmax([1.0, 2.0], temperature=-1.0), "temperature"),
        (lambda: kl_metrics.kl_from_logits([1.0, 2.0], [1.0, 2.0, 3.0]), "do not broadcast"),
        (lambda: kl_metrics.kl_from_logits([1.0, 2.0], [[1.0], [2.0]]), "same number of bins"),
        (lambda: kl_metrics.divergences_from_logits([1.0], [2.0], multilabel=True,
                                                    metrics="js_distance"), "metric"),
        (lambda: kl_metrics.kl_from_logits([1.0, 2.0], [1.0, 2.0], base=1), "base"),
    ],
)
def test_invalid_logit_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
