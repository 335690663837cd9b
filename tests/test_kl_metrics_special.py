"""kl_metrics.special: the numpy versions against scipy.special over wide ranges (far tails
included), the scipy-backed ones imported only on their first call, without executing
numpy's developer tools (numpy.f2py, numpy.testing), which still work when used."""

from __future__ import annotations

import decimal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.special
from hypothesis import given, settings
from hypothesis import strategies as st

import kl_metrics.special as ks

ROOT = Path(__file__).parents[1]
#: Largest relative difference from scipy's chdtrc. Both compute the tail through
#: exp(log of the leading term), whose rounding is about 1e-16 x |that log|: 700 at
#: p = 1e-300, several thousand for dof in the thousands. Measured: 1.9e-12 at dof 1,999
#: and p = 1e-117, where mpmath at 40 digits puts scipy at 1.9e-12 and this at 6e-14
#: (this is at most 3e-13 from mpmath where scipy is closer).
CHDTRC_RTOL = 4e-12


def _fresh(code: str) -> str:
    """stdout of ``code`` in a new interpreter (this one has imported everything already)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    return done.stdout.strip()


def _assert_chdtrc_matches_scipy(dof: np.ndarray, x: np.ndarray) -> None:
    expected, got = scipy.special.chdtrc(dof, x), ks.chdtrc(dof, x)
    shown = expected >= 1e-300  # below, both are at the edge of doubles
    np.testing.assert_allclose(got[shown], expected[shown], rtol=CHDTRC_RTOL, atol=0)
    assert np.all(got[~shown] < 1e-299)


@pytest.mark.parametrize("dof", [*range(1, 42), 99, 100, 101, 500, 999, 1000, 1999, 2000])
def test_chdtrc_matches_scipy_from_1_down_to_1e_300(dof: int) -> None:
    # statistics at tail probabilities 1, 0.9, ... down to 1e-300 (scipy's inverse), and
    # around the mean, where the sum has its most terms
    p = np.concatenate([[1.0 - 1e-12, 0.999, 0.9, 0.5], np.logspace(-1, -300, 300)])
    x = np.concatenate([scipy.special.chdtri(dof, p), [0.0, 1e-300, 1e-12, 0.4, 1, 2, 8],
                        dof + np.linspace(-3, 3, 41) * np.sqrt(2 * dof)])
    x = x[x >= 0]
    _assert_chdtrc_matches_scipy(np.full(x.shape, dof), x)


@settings(max_examples=300)
@given(dof=st.integers(1, 2000), log_x=st.floats(-30, 4.2))
def test_chdtrc_matches_scipy_anywhere(dof: int, log_x: float) -> None:
    _assert_chdtrc_matches_scipy(np.array([dof]), np.array([10.0**log_x]))


def test_chdtrc_broadcasts_and_keeps_scipys_special_values() -> None:
    dof = np.arange(1, 7)[:, None]
    x = np.array([0.0, np.inf, -1.0, np.nan, 2.0, 1e300])
    np.testing.assert_allclose(ks.chdtrc(dof, x), scipy.special.chdtrc(dof, x),
                               rtol=CHDTRC_RTOL, atol=0)
    assert ks.chdtrc(np.array([], dtype=int), np.array([])).shape == (0,)
    with pytest.raises(ValueError, match="whole numbers"):
        ks.chdtrc(1.5, 2.0)
    with pytest.raises(ValueError, match="whole numbers"):
        ks.chdtrc([0, 1], 2.0)


@pytest.mark.parametrize("dof", [1, 2, 3, 10, 19, 100, 1000])
def test_chdtrc_underflows_to_0_where_scipy_does(dof: int) -> None:
    # scipy's tail is 0 from where its leading factor is below exp(-709.78), a little below
    # the smallest normal double; the sum itself would go on in subnormals
    start = float(scipy.special.chdtri(dof, 1e-300))
    x = np.linspace(start, start + 100, 20_001)
    expected, got = scipy.special.chdtrc(dof, x), ks.chdtrc(dof, x)
    assert 0 < np.count_nonzero(expected == 0) < x.size
    np.testing.assert_array_equal(got == 0, expected == 0)


def test_gamma_excess_is_log_gamma_less_its_leading_terms() -> None:
    # the table to 15 and Stirling's series above, against 50-digit decimals at y = a
    # (where the Poisson term's log is -excess(a))
    twice_a = np.arange(1, 81)
    expected = [-_log_poisson_reference(int(t), t / 2) for t in twice_a]
    np.testing.assert_allclose(ks._gamma_excess(40.0)[1:], expected, rtol=0, atol=2e-15)


def test_log_factorial_against_50_digit_decimals() -> None:
    # exact to 15, Stirling's series above: both sides of the hand-over, and far out
    k = np.array([0, 1, 2, 14, 15, 16, 17, 30, 100, 1000, 12345, 10**6])
    with decimal.localcontext(prec=50):
        expected = [float(sum((decimal.Decimal(i).ln() for i in range(2, n + 1)),
                              decimal.Decimal(0))) for n in k.tolist()]
    np.testing.assert_allclose(ks.log_factorial(k.astype(float)), expected, rtol=2e-16, atol=0)


@settings(max_examples=200)
@given(k=st.lists(st.integers(0, 10**12), min_size=1, max_size=20))
def test_log_factorial_matches_scipy(k: list[int]) -> None:
    # each within about one rounding (2.2e-16) of the true value, on either side
    counts = np.array(k, dtype=float)
    np.testing.assert_allclose(ks.log_factorial(counts), scipy.special.gammaln(counts + 1),
                               rtol=6e-16, atol=0)


def _log_poisson_reference(twice_a: int, y: float) -> float:
    """``log(exp(-y) y^a / Gamma(a + 1))``, ``a = twice_a / 2``, in 50-digit decimals."""
    with decimal.localcontext(prec=50):
        def log_factorial(n: int) -> decimal.Decimal:
            return sum((decimal.Decimal(i).ln() for i in range(2, n + 1)), decimal.Decimal(0))

        n = twice_a // 2
        # Gamma(n + 3/2) = (2n + 2)! sqrt(pi) / (4^(n+1) (n + 1)!)
        log_gamma = log_factorial(n) if twice_a % 2 == 0 else (
            log_factorial(2 * n + 2) - (n + 1) * decimal.Decimal(4).ln()
            - log_factorial(n + 1) + decimal.Decimal(_PI).ln() / 2)
        y_ = decimal.Decimal(y)
        return float(decimal.Decimal(twice_a) / 2 * y_.ln() - y_ - log_gamma)


_PI = "3.14159265358979323846264338327950288419716939937510582097494459"


@pytest.mark.parametrize("twice_a", [1, 20, 30, 31, 32, 201, 2000, 3999])
def test_log_poisson_term_against_50_digit_decimals(twice_a: int) -> None:
    # within 5e-15 near y = a, where the deviance a log(a/y) + y - a cancels (the direct
    # form loses 1e-16 x a there) and where the exact table hands over to Stirling's series
    # (a = 15.5); further out within the rounding of y, whose log the result carries
    a = twice_a / 2
    y = np.concatenate([a + np.linspace(-3, 3, 13) * np.sqrt(a), [a / 10, 10 * a, 0.3]])
    y = y[y > 0]
    expected = np.array([_log_poisson_reference(twice_a, v) for v in y])
    got = ks._log_poisson_term(np.full(y.shape, a), y, ks._gamma_excess(a))
    assert np.all(np.abs(got - expected) <= 5e-15 + 2e-16 * (np.abs(y - a) + np.abs(expected)))


def test_erfc_of_root_matches_scipy_on_each_of_its_ranges() -> None:
    # below 1, 1 to 8 and above 8 in sqrt(y), down to erfc = 1e-300: against scipy's
    # scaled erfcx(x) = exp(x^2) erfc(x) times exp(-y), within 2e-15 (scipy's own erfc
    # rounds exp(-sqrt(y)^2), off by up to 4e-16 y: 1.1e-13 at y = 689)
    y = np.concatenate([np.linspace(0, 1, 101), np.linspace(1, 64, 500),
                        np.linspace(64, 689, 500)])
    expected = scipy.special.erfcx(np.sqrt(y)) * np.exp(-y)
    np.testing.assert_allclose(ks._erfc_of_root(y), expected, rtol=2e-15, atol=0)
    plain = scipy.special.erfc(np.sqrt(y))
    assert np.all(np.abs(ks._erfc_of_root(y) - plain) <= (1e-14 + 4e-16 * y) * plain)


_FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)


def _assert_close(got: np.ndarray, expected: np.ndarray, scale: np.ndarray) -> None:
    """Equal (NaN included), or within 1e-14 relative or a rounding of ``scale``."""
    with np.errstate(all="ignore"):
        close = np.abs(got - expected) <= 1e-14 * np.abs(expected) + np.where(
            np.isfinite(scale), 4e-16 * scale, 0.0)
    assert np.all((got == expected) | (np.isnan(got) & np.isnan(expected)) | close)


@settings(max_examples=500)
@given(x=st.lists(_FLOATS, min_size=1, max_size=8), y=st.lists(_FLOATS, min_size=8,
                                                                 max_size=8))
def test_kl_div_and_xlogy_match_scipy(x: list[float], y: list[float]) -> None:
    # x log(x/y) - x + y cancels near x = y: within a rounding of the inputs there
    left, right = np.array(x), np.array(y)[:len(x)]
    with np.errstate(all="ignore"):
        _assert_close(ks.kl_div(left, right), scipy.special.kl_div(left, right),
                      np.abs(left) + np.abs(right))
        _assert_close(ks.xlogy(left, right), scipy.special.xlogy(left, right),
                      np.zeros_like(left))


@settings(max_examples=300)
@given(y=st.floats(1e3, 1e12), share=st.floats(-0.45, 0.9))
def test_kl_div_near_its_minimum_keeps_the_digits_of_the_term(y: float, share: float) -> None:
    """x within a factor 2 of y: the term (of the size of d^2 / y) to about eps |d|, against
    50 digits, where scipy's textbook form keeps only about eps x (and fails this)."""
    x = y + share * y
    with decimal.localcontext() as context:
        context.prec = 50
        exact_x, exact_y = decimal.Decimal(x), decimal.Decimal(y)
        exact = float(exact_x * (exact_x / exact_y).ln() - exact_x + exact_y)
    got = float(ks.kl_div(x, y))
    assert abs(got - exact) <= 4 * np.finfo(float).eps * (abs(x - y) + exact) + 1e-300


def test_kl_div_and_xlogy_keep_scipys_special_values() -> None:
    values = np.array([0.0, -0.0, 1.0, -1.0, 2.5, 1e-300, 1e300, np.inf, -np.inf, np.nan])
    x, y = np.meshgrid(values, values)
    with np.errstate(all="ignore"):
        for ours, theirs in ((ks.kl_div, scipy.special.kl_div), (ks.xlogy, scipy.special.xlogy)):
            np.testing.assert_array_equal(ours(x, y), theirs(x, y))


def test_kl_div_on_counts_is_scipys_to_the_rounding() -> None:
    rng = np.random.default_rng(0)
    counts = rng.poisson(rng.gamma(0.5, 40, 100_000)).astype(float)
    expected = counts.sum() * rng.dirichlet(np.ones(counts.size))
    np.testing.assert_allclose(ks.kl_div(counts, expected),
                               scipy.special.kl_div(counts, expected), rtol=1e-13, atol=1e-12)


@settings(max_examples=300)
@given(x=st.lists(_FLOATS, min_size=1, max_size=6))
def test_logistic_functions_match_scipy(x: list[float]) -> None:
    values = np.array(x)
    with np.errstate(all="ignore"):
        for ours, theirs in ((ks.expit, scipy.special.expit),
                             (ks.log_expit, scipy.special.log_expit)):
            np.testing.assert_allclose(ours(values), theirs(values), rtol=1e-15, atol=0)
        matrix = np.resize(values, (3, len(x)))
        for axis in (0, -1):
            np.testing.assert_allclose(ks.log_softmax(matrix, axis=axis),
                                       scipy.special.log_softmax(matrix, axis=axis),
                                       rtol=1e-14, atol=1e-300)


@given(p=st.floats(1e-300, 1 - 1e-16))
def test_ndtri_matches_scipy(p: float) -> None:
    assert ks.ndtri(p) == pytest.approx(float(scipy.special.ndtri(p)), rel=1e-14, abs=1e-300)


def test_the_scipy_backed_function_is_scipys() -> None:
    a = np.array([0.5, 1.0, 3.5, 20.0, 1e6])
    np.testing.assert_array_equal(ks.gammaln(a), scipy.special.gammaln(a))


def test_importing_them_imports_no_scipy_and_scipy_runs_no_numpy_tools() -> None:
    executed = _fresh(
        "import sys, kl_metrics.special as s\n"
        "s.chdtrc([1, 2], 3.0), s.kl_div(1.0, 2.0), s.log_softmax([1.0, 2.0]), s.ndtri(0.9)\n"
        "s.log_factorial([0.0, 20.0])\n"
        "print('scipy' in sys.modules, end=' ')\n"
        "s.gammaln(3.0)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('numpy.f2py.', 'numpy.testing.',"
        " 'charset_normalizer', 'unittest'))), 'scipy.special' in sys.modules)")
    assert executed == "False [] True"
    plain = _fresh("import sys, scipy.special\nprint('numpy.f2py.crackfortran' in sys.modules)")
    assert plain == "True"  # what the lazy modules save (if scipy stops this, drop them)


def test_the_deferred_modules_load_on_first_use() -> None:
    used = _fresh(
        "import numpy as np, kl_metrics.special\n"
        "np.testing.assert_allclose(kl_metrics.special.gammaln(3.0), np.log(2.0))\n"
        "import numpy.f2py\n"
        "print(np.f2py.get_include().endswith('src'), np.testing.assert_equal.__module__)")
    assert used == "True numpy.testing._private.utils"


def test_already_imported_modules_are_left_alone() -> None:
    kept = _fresh("import numpy.testing, sys\nbefore = sys.modules['numpy.testing']\n"
                  "import kl_metrics.special as s\ns.gammaln(1.0)\n"
                  "print(sys.modules['numpy.testing'] is before, type(before).__name__)")
    assert kept == "True module"
