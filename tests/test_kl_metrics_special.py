"""kl_metrics.special: scipy.special's own functions, imported without executing numpy's
developer tools (numpy.f2py, numpy.testing), which still work when something uses them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import scipy.special

import kl_metrics.special

ROOT = Path(__file__).parents[1]


def _fresh(code: str) -> str:
    """stdout of ``code`` in a new interpreter (this one has imported everything already)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    return done.stdout.strip()


def test_the_functions_are_scipys_own() -> None:
    for name in kl_metrics.special.__all__:
        assert getattr(kl_metrics.special, name) is getattr(scipy.special, name), name


def test_importing_them_runs_neither_f2py_nor_numpy_testing() -> None:
    executed = _fresh(
        "import sys, kl_metrics.special\n"
        "print(sorted(m for m in sys.modules if m.startswith(('numpy.f2py.', 'numpy.testing.',"
        " 'charset_normalizer', 'unittest'))))")
    assert executed == "[]"
    plain = _fresh("import sys, scipy.special\nprint('numpy.f2py.crackfortran' in sys.modules)")
    assert plain == "True"  # what the lazy modules save (if scipy stops this, drop them)


def test_the_deferred_modules_load_on_first_use() -> None:
    used = _fresh(
        "import numpy as np, kl_metrics.special\n"
        "np.testing.assert_allclose(kl_metrics.special.chdtrc(2, 2.0), np.exp(-1.0))\n"
        "import numpy.f2py\n"
        "print(np.f2py.get_include().endswith('src'), np.testing.assert_equal.__module__)")
    assert used == "True numpy.testing._private.utils"


def test_already_imported_modules_are_left_alone() -> None:
    kept = _fresh("import numpy.testing, sys\nbefore = sys.modules['numpy.testing']\n"
                  "import kl_metrics.special\nprint(sys.modules['numpy.testing'] is before,"
                  " type(before).__name__)")
    assert kept == "True module"
