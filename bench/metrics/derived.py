"""Derived TOFU metrics: forget quality and model utility.

They take other metrics' results (and a reference run's), never the model, so they are
plain functions, registered in ``METRICS`` with the attribute ``kind = "derived"`` (item
metrics are :class:`~bench.metrics.base.Metric` subclasses; see :mod:`bench.metrics`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from bench.errors import BenchError
from bench.registry import METRICS

F = TypeVar("F", bound=Callable[..., Any])


def derived(name: str, description: str, outputs: Sequence[str] = ()) -> Callable[[F], F]:
    """Register a derived-metric function under ``name`` and mark it ``kind = "derived"``.

    ``outputs`` names the entries of a function that returns a mapping (recorded as
    missing together when an input is unavailable)."""

    def deco(fn: F) -> F:
        fn.kind = "derived"  # type: ignore[attr-defined]
        fn.outputs = tuple(outputs)  # type: ignore[attr-defined]
        METRICS.add(name, fn, description)
        return fn

    return deco


def _defined(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and not math.isnan(float(v))]


@derived("forget_quality", "KS-test p-value of forget-set truth ratios: unlearned vs retain-only model",
         outputs=("forget_quality", "log10_forget_quality"))
def forget_quality(
    r_unlearned: Sequence[float | None], r_reference: Sequence[float | None]
) -> dict[str, float]:
    """Forget quality: ``scipy.stats.ks_2samp(r_unlearned, r_reference).pvalue``.

    ``r_unlearned`` / ``r_reference``: the per-item ``truth_ratio`` values on the forget set
    of the unlearned model and of the retain-only reference model. Called with scipy's
    defaults (two-sided, ``method="auto"``: exact for small samples), as open-unlearning's
    ``ks_test``. The KS statistic depends only on the ranks, so it is the same whether both
    samples are in open-unlearning's ``r`` orientation or both inverted; never mix them.

    Missing values (``None``) and NaN are left out (they are "undefined" per item);
    ``±inf`` is kept (it only has a rank). Empty after that -> BenchError.

    Returns ``{"forget_quality": p, "log10_forget_quality": log10(p)}`` (``-inf`` if
    ``p == 0``). Higher = closer to the retain-only model (better unlearning); p = 1 for
    identical samples.
    """
    a, b = _defined(r_unlearned), _defined(r_reference)
    for label, given, kept in (("unlearned", r_unlearned, a), ("reference", r_reference, b)):
        if not kept:
            raise BenchError(
                f"forget_quality: no defined truth-ratio values for the {label} model "
                f"({len(given)} given, all missing or NaN)"
            )
    from scipy.stats import ks_2samp

    p = float(ks_2samp(a, b).pvalue)
    return {"forget_quality": p, "log10_forget_quality": math.log10(p) if p > 0 else -math.inf}


@derived("model_utility", "harmonic mean of the 9 TOFU utility numbers (retain/real authors/world facts x prob/ROUGE/TR)")
def model_utility(values: Mapping[str, float | None]) -> float | None:
    """Harmonic mean of the utility numbers, as open-unlearning's ``hm_aggregate``.

    TOFU passes 9 set-level values: {retain, real authors, world facts} × {probability
    (plain on retain, ``normalized=True`` on the other two), ROUGE-L recall, truth ratio
    with ``mode="retain"``}; the keys only name them in messages. Any value 0 -> 0 (the
    harmonic mean's limit; scipy's ``hmean`` gives 0 too); any missing (``None``/NaN) ->
    ``None``; a negative value or an empty mapping -> BenchError.
    """
    if not values:
        raise BenchError("model_utility: no values given")
    vals: list[float] = []
    missing = False
    for key, v in values.items():
        if v is None or math.isnan(float(v)):
            missing = True
        elif v < 0:
            raise BenchError(f"model_utility: value '{key}' is negative ({v}); expected >= 0")
        else:
            vals.append(float(v))
    if missing:
        return None
    if any(v == 0 for v in vals):
        return 0.0
    from scipy.stats import hmean

    return float(hmean(vals))
