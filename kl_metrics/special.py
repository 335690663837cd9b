"""The ``scipy.special`` functions kl-drift uses, imported in one place at 60% of the cost.

Importing ``scipy.special`` (scipy >= 1.15) builds an array-API copy of numpy's namespace by
reading every public attribute of ``numpy``, and reading ``numpy.f2py`` or ``numpy.testing``
imports them: Fortran wrapper generation and test helpers, 40% of the import (about 0.1 s of
every ``kl-drift run``), used by nothing here. They are registered as lazy modules first
(:class:`importlib.util.LazyLoader`), which load on their first use, so code that does use
them sees no difference. Every module of kl-drift takes these functions from here;
``tests/test_cli.py`` checks that a run never executes those modules.

>>> from kl_metrics.special import chdtrc
>>> round(float(chdtrc(1, 3.841458820694124)), 6)  # the chi-square tail: P(X >= 3.84), 1 dof
0.05
"""

import importlib.util
import sys

import numpy as np

#: numpy subpackages that ``scipy.special``'s import reads but kl-drift never uses.
LAZY_NUMPY = ("numpy.f2py", "numpy.testing")


def _defer(name: str) -> None:
    """Put a lazy module for ``name`` in ``sys.modules`` and on its parent, unless imported."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:  # gone from this numpy: nothing to defer
        return
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)  # lazy: runs the module on its first attribute access
    # the parent's attribute, as a real import sets it: numpy's own lazy __getattr__ would
    # import the module for real
    setattr(np, name.rpartition(".")[2], module)


for _name in LAZY_NUMPY:
    _defer(_name)

from scipy.special import (  # noqa: E402  (after the lazy modules, by design)
    betaincinv,
    chdtrc,
    expit,
    gammaln,
    kl_div,
    log_expit,
    log_softmax,
    ndtri,
    xlogy,
)

__all__ = ["betaincinv", "chdtrc", "expit", "gammaln", "kl_div", "log_expit", "log_softmax",
           "ndtri", "xlogy"]
