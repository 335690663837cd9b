"""kl_metrics.smoothing: epsilon, additive and no smoothing."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import kl_metrics

histograms = st.integers(1, 4).flatmap(
    lambda rows: st.integers(1, 8).flatmap(
        lambda bins: arrays(np.float64, (rows, bins),
                            elements=st.floats(0, 1e6) | st.just(0.0))
    )
).map(lambda x: np.concatenate([x, np.ones((x.shape[0], 1))], axis=1))


@settings(max_examples=80, deadline=None)
@given(histograms, st.sampled_from([0.0, 1e-6, 1e-3, 0.2]))
def test_epsilon_floors_then_renormalises(x, eps):
    got = kl_metrics.smooth(x, eps=eps)
    reference = np.maximum(x / x.sum(-1, keepdims=True), eps)
    reference /= reference.sum(-1, keepdims=True)
    np.testing.assert_allclose(got, reference, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-12)
    # a floor at eps renormalised by a total <= 1 + bins * eps
    assert np.all(got >= eps / (1 + x.shape[-1] * eps) * (1 - 1e-12))
    # counts and probabilities give the same result
    np.testing.assert_allclose(kl_metrics.smooth(x / 7.0, eps=eps), got, rtol=1e-12, atol=1e-300)


@settings(max_examples=60, deadline=None)
@given(histograms, st.sampled_from([0.5, 1.0, 3.0]))
def test_additive_adds_pseudo_counts(x, alpha):
    got = kl_metrics.smooth(x, method="additive", alpha=alpha)
    bins = x.shape[-1]
    np.testing.assert_allclose(got, (x + alpha) / (x.sum(-1, keepdims=True) + alpha * bins),
                               rtol=1e-12)
    assert np.all(got > 0)


def test_laplace_and_none_closed_forms():
    np.testing.assert_allclose(kl_metrics.smooth([3, 1, 0], method="additive", alpha=1),
                               [4 / 7, 2 / 7, 1 / 7])
    np.testing.assert_allclose(kl_metrics.smooth([3, 1, 0], method="none"), [0.75, 0.25, 0])
    np.testing.assert_allclose(kl_metrics.smooth([[3, 1], [1, 1]], method="none", axis=0),
                               [[0.75, 0.5], [0.25, 0.5]])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "laplace"}, "method must be one of"),
        ({"eps": -1e-9}, "eps"),
        ({"eps": 1.0}, "eps"),
        ({"eps": float("nan")}, "eps"),
        ({"alpha": 0}, "alpha"),
        ({"alpha": "1"}, "alpha"),
        ({"axis": 2}, "axis 2 is out of bounds"),
    ],
)
def test_invalid_smoothing_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kl_metrics.smooth([[1, 2], [3, 4]], **kwargs)
