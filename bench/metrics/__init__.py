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

from bench.metrics import derived, memorization, probability, rouge, truth_ratio  # noqa: F401
from bench.metrics.base import EvalContext, Metric


def metric_kind(obj: Any) -> str:
    """``"derived"`` for a derived-metric function, ``"item"`` for a Metric subclass."""
    if getattr(obj, "kind", None) == "derived":
        return "derived"
    if isinstance(obj, type) and issubclass(obj, Metric):
        return "item"
    raise TypeError(f"{obj!r} is not a registered metric")


__all__ = ["EvalContext", "Metric", "metric_kind"]
