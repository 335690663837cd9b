"""Exact, explainable divergences between histograms, logits and samples (numpy/scipy only).

Histograms (counts or probabilities): :func:`divergences` (the fast multi-metric entry
point), the single metrics, :func:`bin_contributions` (both in one pass:
:func:`divergences_and_contributions`) and :func:`smooth`. Logits:
:func:`divergences_from_logits` and friends. Samples: :func:`kl_estimate`,
:func:`kl_estimate_two_sample`. Significance: :func:`g_test`; bias-corrected effects:
:func:`jackknife`. See docs/kl_metrics.md.
"""

from .divergences import (
    DEFAULT_METRICS,
    bin_contributions,
    cross_entropy,
    divergences,
    divergences_and_contributions,
    entropy,
    hellinger,
    js_distance,
    js_divergence,
    kl_divergence,
    psi,
    reverse_kl,
    symmetric_kl,
    total_variation,
)
from .estimators import KLEstimate, kl_estimate, kl_estimate_two_sample, kl_estimator_terms
from .jackknife import JackknifeEstimate, jackknife
from .logits import (
    LOGIT_METRICS,
    divergences_from_logits,
    js_from_logits,
    kl_from_logits,
    log_softmax,
    multilabel_kl_from_logits,
    multilabel_symmetric_kl,
    symmetric_kl_from_logits,
)
from .significance import GTestResult, g_terms, g_test
from .smoothing import smooth

__all__ = [
    "DEFAULT_METRICS",
    "LOGIT_METRICS",
    "GTestResult",
    "JackknifeEstimate",
    "KLEstimate",
    "bin_contributions",
    "cross_entropy",
    "divergences",
    "divergences_and_contributions",
    "divergences_from_logits",
    "entropy",
    "g_terms",
    "g_test",
    "hellinger",
    "jackknife",
    "js_distance",
    "js_divergence",
    "js_from_logits",
    "kl_divergence",
    "kl_estimate",
    "kl_estimate_two_sample",
    "kl_estimator_terms",
    "kl_from_logits",
    "log_softmax",
    "multilabel_kl_from_logits",
    "multilabel_symmetric_kl",
    "psi",
    "reverse_kl",
    "smooth",
    "symmetric_kl",
    "symmetric_kl_from_logits",
    "total_variation",
]
