"""kl_metrics validation: every bad input class raises ValueError naming what is wrong."""

import numpy as np
import pytest

import kl_metrics

GOOD = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])

HISTOGRAM_FUNCTIONS = [
    lambda p, q, **kw: kl_metrics.divergences(p, q, **kw),
    lambda p, q, **kw: kl_metrics.bin_contributions(p, q, "js_distance", **kw),
    lambda p, q, **kw: kl_metrics.kl_divergence(p, q, **kw),
    lambda p, q, **kw: kl_metrics.hellinger(p, q, **kw),
]
BAD_HISTOGRAMS = [
    (np.array([[1.0, -2.0, 3.0], [4.0, 5.0, 6.0]]), "p contains negative entries"),
    (np.array([[1.0, np.nan, 3.0], [4.0, 5.0, 6.0]]), "p contains NaN"),
    (np.array([[1.0, np.inf, 3.0], [4.0, 5.0, 6.0]]), "p contains infinite"),
    (np.array([[1e308, 1e308, 1.0], [4.0, 5.0, 6.0]]), "overflow"),
    (np.array([[0.0, 0.0, 0.0], [4.0, 5.0, 6.0]]), "p has 1 all-zero slice"),
    (np.ones((3, 3)), "shapes do not broadcast"),
    (np.ones((2, 4)), "shapes do not broadcast"),
    (np.ones((2, 1)), "same number of bins"),
    (np.array([["a", "b", "c"], ["d", "e", "f"]]), "p must hold real numbers"),
    (np.ones((2, 3)) * 1j, "p must hold real numbers"),
    (np.ones((2, 0)), "broadcast|no bins"),
]


@pytest.mark.parametrize("function", HISTOGRAM_FUNCTIONS)
@pytest.mark.parametrize(("bad", "match"), BAD_HISTOGRAMS)
def test_bad_histograms_raise(function, bad, match):
    with pytest.raises(ValueError, match=match):
        function(bad, GOOD)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"base": 1}, "base must be"),
        ({"base": 0}, "base must be"),
        ({"base": -2}, "base must be"),
        ({"base": float("inf")}, "base must be"),
        ({"base": "2"}, "base must be"),
        ({"eps": -0.1}, "eps must be"),
        ({"eps": 1.5}, "eps must be"),
        ({"eps": None}, "eps must be"),
        ({"axis": 5}, "axis 5 is out of bounds"),
        ({"axis": 1.5}, "axis must be an integer"),
        ({"metrics": ("kl", "kll")}, "each metric must be one of"),
        ({"metrics": ()}, "at least one metric"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kl_metrics.divergences(GOOD, GOOD, **kwargs)


def test_second_argument_is_named_and_scalars_rejected():
    with pytest.raises(ValueError, match="q contains negative"):
        kl_metrics.js_divergence(GOOD, -GOOD)
    with pytest.raises(ValueError, match="at least one dimension"):
        kl_metrics.kl_divergence(1.0, 2.0)
    with pytest.raises(ValueError, match="x has 1 all-zero"):
        kl_metrics.smooth([[0, 0], [1, 1]])
    with pytest.raises(ValueError, match="z contains NaN"):
        kl_metrics.log_softmax([1.0, np.nan])

