"""kl_metrics.divergences: agreement with scipy, identities, broadcasting, contributions."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr

import kl_metrics
from kl_metrics import _terms

ALL = tuple(_terms.METRICS)
SINGLE = {
    "kl": kl_metrics.kl_divergence,
    "reverse_kl": kl_metrics.reverse_kl,
    "symmetric_kl": kl_metrics.symmetric_kl,
    "psi": kl_metrics.psi,
    "js_divergence": kl_metrics.js_divergence,
    "js_distance": kl_metrics.js_distance,
    "cross_entropy": kl_metrics.cross_entropy,
    "hellinger": kl_metrics.hellinger,
    "total_variation": kl_metrics.total_variation,
}
LN2 = math.log(2)


def smoothed(x, eps):
    """Independent reference of the epsilon method: normalise, floor, renormalise."""
    p = np.asarray(x, float)
    p = p / p.sum(axis=-1, keepdims=True)
    p = np.maximum(p, eps)
    return p / p.sum(axis=-1, keepdims=True)


def reference(p, q):
    """Every metric (nats) of already-normalised p, q from scipy / plain numpy formulas."""
    kl, rev = rel_entr(p, q).sum(-1), rel_entr(q, p).sum(-1)
    js = jensenshannon(p, q, axis=-1) ** 2
    return {
        "kl": kl,
        "reverse_kl": rev,
        "symmetric_kl": kl + rev,
        "psi": ((p - q) * np.log(p / q)).sum(-1),
        "js_divergence": js,
        "js_distance": np.sqrt(js),
        "cross_entropy": stats.entropy(p, axis=-1) + kl,
        "entropy": stats.entropy(p, axis=-1),
        "hellinger": np.sqrt(0.5 * ((np.sqrt(p) - np.sqrt(q)) ** 2).sum(-1)),
        "total_variation": 0.5 * np.abs(p - q).sum(-1),
    }


@st.composite
def histogram_pairs(draw, max_rows=4, max_bins=8, zeros=True):
    """Count histograms p, q of shape (rows, bins), every row with a positive total."""
    rows, bins = draw(st.integers(1, max_rows)), draw(st.integers(2, max_bins))
    cells = st.floats(0.5, 1000)
    if zeros:
        cells = cells | st.sampled_from([0.0, 1.0])
    p, q = (draw(arrays(np.float64, (rows, bins), elements=cells)) for _ in range(2))
    p[:, 0] += 1.0
    q[:, -1] += 1.0
    return p, q


# --- worked examples ----------------------------------------------------------------------
def test_seed_001_worked_example():
    p, q = [0.5, 0.3, 0.2], [0.4, 0.4, 0.2]
    closed = 0.5 * math.log(0.5 / 0.4) + 0.3 * math.log(0.3 / 0.4)
    assert kl_metrics.kl_divergence(p, q, eps=0) == pytest.approx(closed, rel=1e-14)
    assert kl_metrics.kl_divergence(p, q, eps=0) == pytest.approx(0.02527, abs=5e-6)
    assert kl_metrics.kl_divergence(p, q, base=2, eps=0) == pytest.approx(0.03645, abs=5e-6)
    assert abs(kl_metrics.kl_divergence(p, q, eps=0) - 0.0204) > 1e-3  # the misprint


def test_disjoint_supports_hit_the_bounds():
    p, q = [3, 0, 0], [0, 2, 5]
    assert kl_metrics.kl_divergence(p, q, eps=0) == np.inf
    assert kl_metrics.symmetric_kl(p, q, eps=0) == np.inf
    assert kl_metrics.js_divergence(p, q, eps=0) == pytest.approx(LN2, rel=1e-15)
    assert kl_metrics.js_distance(p, q, base=2, eps=0) == pytest.approx(1.0, rel=1e-15)
    assert kl_metrics.hellinger(p, q, eps=0) == pytest.approx(1.0, rel=1e-15)
    assert kl_metrics.total_variation(p, q, eps=0) == pytest.approx(1.0, rel=1e-15)
    # smoothing makes KL finite and large, JS stays below its bound
    smooth_kl = kl_metrics.kl_divergence(p, q)
    assert 10 < smooth_kl < np.inf
    assert kl_metrics.js_divergence(p, q) < LN2


def test_zero_bins_contribute_nothing_when_exact():
    # a bin empty on one side only: KL(p||q) ignores it where p is 0
    p, q = [0.0, 0.5, 0.5], [0.2, 0.4, 0.4]
    assert kl_metrics.kl_divergence(p, q, eps=0) == pytest.approx(math.log(0.5 / 0.4))
    assert kl_metrics.entropy([0, 1, 1], base=2, eps=0) == 1.0


def test_tiny_probabilities_never_give_nan():
    p = np.array([1e-300, 1.0 - 2e-300, 1e-300])
    q = np.array([1e-310, 1.0, 5e-324])
    for eps in (0.0, 1e-6, 1e-300):
        values = kl_metrics.divergences(p, q, metrics=ALL, eps=eps)
        assert all(np.isfinite(v) or v == np.inf for v in values.values()), values
        assert not any(np.isnan(v) for v in values.values())


# --- agreement with scipy -----------------------------------------------------------------
@pytest.mark.parametrize("eps", [0.0, 1e-6, 1e-3])
def test_batch_agrees_with_scipy(eps):
    rng = np.random.default_rng(7)
    current = rng.poisson(rng.gamma(1.0, 5, size=(6, 1, 12)), size=(6, 9, 12)).astype(float)
    baseline = rng.poisson(30, size=(6, 1, 12)).astype(float) + 1
    current[..., 0] += 1
    if eps == 0:
        current += 1  # keep KL finite so scipy's reference is comparable everywhere
    p, q = np.broadcast_arrays(smoothed(current, eps), smoothed(baseline, eps))
    want = reference(p, q)
    got = kl_metrics.divergences(current, baseline, metrics=ALL, eps=eps)
    for name in ALL:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-14, err_msg=name)
        single = SINGLE.get(name)
        if single is not None:
            np.testing.assert_array_equal(single(current, baseline, eps=eps), got[name])


def test_base_converts_units():
    rng = np.random.default_rng(3)
    p, q = rng.random((5, 7)), rng.random((5, 7))
    nats = kl_metrics.divergences(p, q, metrics=ALL)
    for base in (2, 10, math.e):
        other = kl_metrics.divergences(p, q, metrics=ALL, base=base)
        for name, metric in _terms.METRICS.items():
            if not metric.logarithmic:
                np.testing.assert_array_equal(other[name], nats[name])
            elif metric.root:
                np.testing.assert_allclose(other[name] ** 2, nats[name] ** 2 / math.log(base))
            else:
                np.testing.assert_allclose(other[name], nats[name] / math.log(base))
    np.testing.assert_allclose(
        kl_metrics.js_distance(p, q, base=2), jensenshannon(p, q, axis=-1, base=2), rtol=1e-12
    )


# --- properties ---------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(histogram_pairs(), st.sampled_from([0.0, 1e-6, 1e-2]))
def test_metrics_are_non_negative_and_zero_iff_equal(pair, eps):
    p, q = pair
    values = kl_metrics.divergences(p, q, metrics=ALL, eps=eps)
    for name in ALL:
        assert np.all(values[name] >= 0), name
    same = kl_metrics.divergences(p, p, metrics=ALL, eps=eps)
    for name in ALL:
        if name not in ("entropy", "cross_entropy"):
            np.testing.assert_array_equal(same[name], 0.0, err_msg=name)
    # distributions that differ visibly have a positive divergence
    differ = np.abs(smoothed(p, eps) - smoothed(q, eps)).max(axis=-1) > 1e-3
    for name in ("kl", "reverse_kl", "js_divergence", "hellinger", "total_variation"):
        assert np.all(values[name][differ] > 0), name


@settings(max_examples=60, deadline=None)
@given(histogram_pairs(), st.sampled_from([0.0, 1e-6, 1e-2]))
def test_identities_between_metrics(pair, eps):
    p, q = pair
    d = kl_metrics.divergences(p, q, metrics=ALL, eps=eps)
    swapped = kl_metrics.divergences(q, p, metrics=ALL, eps=eps)
    # JS symmetric and bounded by log 2
    np.testing.assert_allclose(d["js_divergence"], swapped["js_divergence"], atol=1e-14)
    assert np.all(d["js_divergence"] <= LN2 + 1e-15)
    assert np.all(kl_metrics.js_distance(p, q, base=2, eps=eps) <= 1 + 1e-15)
    # reverse KL is KL with the arguments swapped
    np.testing.assert_array_equal(d["reverse_kl"], swapped["kl"])
    # H(P, Q) = H(P) + KL(P||Q), PSI = symmetric KL = KL + reverse KL
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(d["cross_entropy"], d["entropy"] + d["kl"], atol=1e-12)
        np.testing.assert_allclose(d["symmetric_kl"], d["kl"] + d["reverse_kl"], atol=1e-12)
    np.testing.assert_array_equal(d["psi"], d["symmetric_kl"])
    np.testing.assert_allclose(d["js_distance"] ** 2, d["js_divergence"], atol=1e-15)
    # bounds between distances: H^2 <= TV <= sqrt(2) H
    assert np.all(d["hellinger"] ** 2 <= d["total_variation"] + 1e-12)
    assert np.all(d["total_variation"] <= math.sqrt(2) * d["hellinger"] + 1e-12)


@settings(max_examples=60, deadline=None)
@given(histogram_pairs(zeros=False), st.sampled_from(ALL))
def test_divergences_equals_each_single_function(pair, name):
    p, q = pair
    together = kl_metrics.divergences(p, q, metrics=ALL, base=2)
    single = kl_metrics.divergences(p, q, metrics=name, base=2)[name]
    np.testing.assert_array_equal(together[name], single)
    function = SINGLE.get(name)
    if function is not None and _terms.METRICS[name].logarithmic:
        np.testing.assert_array_equal(function(p, q, base=2), single)


@settings(max_examples=80, deadline=None)
@given(histogram_pairs(), st.sampled_from(ALL), st.sampled_from([0.0, 1e-6]))
def test_contributions_sum_to_metric(pair, name, eps):
    p, q = pair
    terms = kl_metrics.bin_contributions(p, q, name, base=2, eps=eps)
    value = kl_metrics.divergences(p, q, metrics=name, base=2, eps=eps)[name]
    assert terms.shape == p.shape
    # JS is a difference of entropies of size ~log2(bins): rounding leaves an absolute error
    # of a few ulps of that, which the square root of a tiny JS distance magnifies.
    cancellation = 16 * np.finfo(float).eps * np.log2(p.shape[-1] + 1)
    smallest = float(np.nanmin(value, initial=np.inf)) if np.size(value) else np.inf
    atol = 1e-12 + (cancellation / (2 * max(smallest, 1e-300))
                    if name == "js_distance" else cancellation)
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(terms.sum(axis=-1), value, rtol=1e-9, atol=atol)


@settings(max_examples=60, deadline=None)
@given(histogram_pairs(), st.sampled_from(ALL), st.lists(st.sampled_from(ALL), min_size=1),
       st.sampled_from([0.0, 1e-6]), st.sampled_from([None, 2.0]), st.sampled_from([0, -1]))
def test_values_and_contributions_in_one_pass_equal_both_calls(pair, name, names, eps, base,
                                                               axis):
    # one pass shares the logarithms between both results: bit for bit what each call gives
    p, q = (np.moveaxis(x, -1, axis) for x in pair)
    values, terms = kl_metrics.divergences_and_contributions(
        p, q, name, metrics=names, base=base, eps=eps, axis=axis)
    expected = kl_metrics.divergences(p, q, metrics=names, base=base, eps=eps, axis=axis)
    assert list(values) == list(expected)
    for metric in expected:
        np.testing.assert_array_equal(values[metric], expected[metric])
    np.testing.assert_array_equal(
        terms, kl_metrics.bin_contributions(p, q, name, base=base, eps=eps, axis=axis))


def test_contributions_point_at_the_drifting_bins():
    baseline = np.array([100, 100, 100, 100.0])
    current = np.array([100, 100, 160, 40.0])
    for name in ("kl", "js_divergence", "js_distance", "hellinger", "total_variation", "psi"):
        terms = kl_metrics.bin_contributions(current, baseline, name)
        assert set(np.argsort(np.abs(terms))[-2:]) == {2, 3}, name
        np.testing.assert_allclose(terms[:2], 0, atol=1e-12)
    # KL terms are signed: negative where the current share is below the baseline one
    kl_terms = kl_metrics.bin_contributions(current, baseline, "kl", eps=0)
    assert kl_terms[2] > 0 > kl_terms[3]
    np.testing.assert_allclose(kl_terms, rel_entr(current / 400, baseline / 400))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 5), st.integers(2, 6), st.data())
def test_broadcast_baseline_equals_loop(features, windows, bins, data):
    counts = st.integers(0, 50).map(float)
    current = data.draw(arrays(np.float64, (features, windows, bins), elements=counts)) + 0.5
    baseline = data.draw(arrays(np.float64, (features, 1, bins), elements=counts))
    baseline[..., 0] += 1
    got = kl_metrics.divergences(current, baseline, metrics=ALL)
    terms = kl_metrics.bin_contributions(current, baseline, "js_distance")
    for f in range(features):
        for w in range(windows):
            one = kl_metrics.divergences(current[f, w], baseline[f, 0], metrics=ALL)
            for name in ALL:
                assert got[name][f, w] == pytest.approx(one[name], rel=1e-12, abs=1e-15)
            np.testing.assert_allclose(
                terms[f, w],
                kl_metrics.bin_contributions(current[f, w], baseline[f, 0], "js_distance"),
                rtol=1e-10, atol=1e-15,
            )


def test_axis_and_counts_versus_probabilities():
    rng = np.random.default_rng(11)
    p, q = rng.integers(0, 20, (3, 8, 5)).astype(float) + 1, rng.random((3, 1, 5))
    want = kl_metrics.divergences(p, q, metrics=ALL)
    moved = kl_metrics.divergences(np.moveaxis(p, -1, 0), np.moveaxis(q, -1, 0),
                                   metrics=ALL, axis=0)
    scaled = kl_metrics.divergences(p / p.sum(-1, keepdims=True), 7 * q, metrics=ALL)
    for name in ALL:
        np.testing.assert_allclose(moved[name], want[name], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(scaled[name], want[name], rtol=1e-12, atol=1e-15)
    terms = kl_metrics.bin_contributions(np.moveaxis(p, -1, 1), np.moveaxis(q, -1, 1), "kl",
                                         axis=1)
    np.testing.assert_allclose(np.moveaxis(terms, 1, -1),
                               kl_metrics.bin_contributions(p, q, "kl"), rtol=1e-12)


def test_blocks_do_not_change_results(monkeypatch):
    rng = np.random.default_rng(5)
    current = rng.poisson(3, size=(7, 13, 6)).astype(float) + 0.1
    baseline = rng.random((7, 1, 6))
    whole = kl_metrics.divergences(current, baseline, metrics=ALL)
    whole_terms = kl_metrics.bin_contributions(current, baseline, "js_distance")
    for cells in (1, 7, 40):  # one row per block, rows split across features, several rows
        monkeypatch.setattr(_terms, "BLOCK_CELLS", cells)
        blocked = kl_metrics.divergences(current, baseline, metrics=ALL)
        # equal up to rounding (row sums of different block shapes may round differently)
        for name in ALL:
            np.testing.assert_allclose(blocked[name], whole[name], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(
            kl_metrics.bin_contributions(current, baseline, "js_distance"), whole_terms,
            rtol=1e-12, atol=1e-15,
        )


def test_scalar_results_and_empty_batches():
    assert isinstance(kl_metrics.kl_divergence([1, 2], [2, 1]), float)
    empty = kl_metrics.divergences(np.ones((0, 4)), np.ones((1, 4)))
    assert all(value.shape == (0,) for value in empty.values())
    assert kl_metrics.divergences([1, 2], [2, 1], metrics="kl").keys() == {"kl"}
    assert tuple(kl_metrics.divergences([1, 2], [2, 1])) == kl_metrics.DEFAULT_METRICS


def test_near_equal_inputs_give_zero_not_nan():
    # rounding makes the JS sum of nearly equal distributions slightly negative (about half
    # of such pairs): the square root must see 0, not a negative number
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(7), size=2000)
    q = p * (1 + rng.normal(scale=1e-12, size=p.shape))
    for name in ("js_distance", "hellinger"):
        values = kl_metrics.divergences(p, q, metrics=(name,), eps=0)[name]
        assert np.isfinite(values).all() and (values >= 0).all()
