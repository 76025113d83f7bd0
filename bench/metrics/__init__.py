"""Metrics: item metrics and derived metrics, all registered in ``bench.registry.METRICS``.

Two kinds share the registry; tell them apart with :func:`metric_kind`:

* **item** metrics are :class:`~bench.metrics.base.Metric` subclasses, constructed with
  their options as keyword arguments (``METRICS.get("probability")(normalized=True)``);
  per item they declare requests and score the responses, then aggregate per set.
* **derived** metrics are plain functions with the attribute ``kind = "derived"``; they
  combine other metrics' results and reference runs, never the model
  (``forget_quality``, ``model_utility``).

Importing this package imports the plugin modules below, which registers them.
"""

from __future__ import annotations

from typing import Any

from bench.metrics import (  # noqa: F401 (imported to register the plugins)
    choice,
    closer_look,
    derived,
    gibberish,
    memorization,
    mia,
    muse,
    probability,
    rouge,
    rwku,
    rwku_utility,
    semeval,
    truth_ratio,
    uncertainty,
)
from bench.metrics.base import EvalContext, Metric


def metric_kind(obj: Any) -> str:
    """``"derived"`` for a derived-metric function, ``"item"`` for a Metric subclass."""
    if getattr(obj, "kind", None) == "derived":
        return "derived"
    if isinstance(obj, type) and issubclass(obj, Metric):
        return "item"
    raise TypeError(f"{obj!r} is not a registered metric")


def metric_direction(obj: Any) -> str:
    """A short direction label for listings: ``higher=more`` / ``lower=more`` / ``see doc``."""
    hib = getattr(obj, "higher_is_better", None)  # None on the class: depends on an option
    if hib is True:
        return "higher=better"
    if hib is False:
        return "lower=better"
    return "by option/goal"


def metric_applies_to(obj: Any) -> str:
    """What a metric applies to (sets, formats, or a derived metric's inputs)."""
    return str(getattr(obj, "applies_to", "") or "any set")


__all__ = ["EvalContext", "Metric", "metric_applies_to", "metric_direction", "metric_kind"]
