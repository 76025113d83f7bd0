"""Bootstrap confidence intervals for set aggregates (MUSE reports them for its ROUGE scores:
``metrics/logger.py``: ``scipy.stats.bootstrap((vals,), np.mean, confidence_level=0.95,
method='percentile')``, 9,999 resamples).

:func:`bootstrap_ci` resamples the per-item values with replacement (``scipy.stats.bootstrap``,
seeded ``numpy.random.default_rng(seed)``, so a rerun gives the same interval) and returns the
percentile interval of the statistic: the mean by default, or any item metric's own
``aggregate`` (e.g. TOFU's forget truth ratio ``mean(min(r, 1/r))``) so that the interval is
around the number the set reports. Missing values are dropped first. The resample count,
seed, confidence and method are returned with the interval and so recorded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from bench.errors import BenchError
from bench.metrics.derived import derived

DEFAULT_RESAMPLES = 9999  # scipy's default and MUSE's


def bootstrap_ci(values: Sequence[float | None], *, n_resamples: int = DEFAULT_RESAMPLES,
                 confidence: float = 0.95, seed: int = 0, method: str = "percentile",
                 statistic: Any = None) -> dict[str, Any]:
    """``{"low", "high", "n", "n_resamples", "seed", "confidence", "method"}``.

    ``statistic``: ``None`` (mean) or a function of a list of floats. Fewer than 2 defined
    values -> ``low = high = None`` (no interval); all values equal -> ``low = high`` = that
    statistic (a zero-width interval, where scipy would warn of a degenerate distribution).
    """
    import numpy as np
    from scipy.stats import bootstrap

    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise BenchError(f"bootstrap: n_resamples must be a positive integer (got {n_resamples!r})")
    if not 0 < confidence < 1:
        raise BenchError(f"bootstrap: confidence must be in (0, 1) (got {confidence!r})")
    if method not in ("percentile", "basic", "BCa"):
        raise BenchError(f"bootstrap: method must be percentile, basic or BCa (got {method!r})")
    vals = []
    for v in values:
        if v is None:
            continue
        if isinstance(v, Mapping) or isinstance(v, bool):
            raise BenchError("bootstrap: per-item values must be numbers (this metric's are mappings)")
        if not math.isnan(float(v)):
            vals.append(float(v))
    out: dict[str, Any] = {"low": None, "high": None, "n": len(vals), "n_resamples": n_resamples,
                           "seed": seed, "confidence": confidence, "method": method}
    if len(vals) < 2:
        return out
    stat = (lambda x: float(statistic(list(x)))) if statistic is not None else None
    if min(vals) == max(vals):
        v = stat(vals) if stat else vals[0]
        out.update(low=v, high=v)
        return out
    if stat is None:
        res = bootstrap((np.asarray(vals),), np.mean, n_resamples=n_resamples, confidence_level=confidence,
                        method=method, rng=np.random.default_rng(seed))
    else:
        res = bootstrap((np.asarray(vals),), stat, n_resamples=n_resamples, confidence_level=confidence,
                        method=method, vectorized=False, rng=np.random.default_rng(seed))
    out.update(low=float(res.confidence_interval.low), high=float(res.confidence_interval.high))
    return out


@derived("bootstrap_ci", "seeded bootstrap confidence interval of a set aggregate (resample count recorded)")
def bootstrap_ci_node(values: Sequence[float | None], name: str, metric: str | None = None,
                      metric_options: Mapping[str, Any] | None = None, n_resamples: int = DEFAULT_RESAMPLES,
                      confidence: float = 0.95, seed: int = 0, method: str = "percentile") -> dict[str, Any]:
    """Node form of :func:`bootstrap_ci`: ``{name}_ci_low``, ``{name}_ci_high``,
    ``{name}_ci_resamples`` (and ``{name}_ci_seed``). ``metric``/``metric_options`` name the
    item metric whose ``aggregate`` is the statistic (default: the mean)."""
    statistic = None
    if metric is not None:
        from bench.evaluate import build_metric

        statistic = build_metric(metric, dict(metric_options or {})).aggregate
    r = bootstrap_ci(values, n_resamples=n_resamples, confidence=confidence, seed=seed, method=method,
                     statistic=statistic)
    return {f"{name}_ci_low": r["low"], f"{name}_ci_high": r["high"],
            f"{name}_ci_resamples": float(r["n_resamples"]), f"{name}_ci_seed": float(r["seed"])}


bootstrap_ci_node.higher_is_better = None  # type: ignore[attr-defined]
bootstrap_ci_node.applies_to = "per-item values of any numeric item metric (derived)"  # type: ignore[attr-defined]
