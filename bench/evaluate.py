"""Evaluation: eval sets → requests → one answering pass → per-item metric values.

Metrics never call the model. Every metric of every eval set declares its requests; all
requests of a run go to the answering layer in one call (so identical requests across
metrics and sets are computed once and the backend can batch across sets); responses
are then handed back to each metric to score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.backends.cache import AnsweringLayer
from bench.items import EvalSet
from bench.metrics.base import EvalContext, Metric
from bench.model_bundle import ModelBundle
from bench.registry import METRICS
from bench.requests import GenerateResponse, Request
from bench.task import SetResult


def build_metric(name: str, options: dict[str, Any]) -> Metric:
    cls = METRICS.get(name)
    if getattr(cls, "kind", "item") == "derived" or not isinstance(cls, type):
        raise ValueError(f"metric '{name}' is derived: it is computed by the task's aggregates")
    return cls(**dict(options))


@dataclass
class Plan:
    """Every request of an evaluation, in order (set → item → metric), with where each
    metric's requests sit: ``sets[k] = (eval set, ctx, [(key, metric)], slots)`` where
    ``slots[i][m]`` are the indices into ``requests`` of item ``i``, metric ``m``;
    ``labels[j]`` = ``"<set>/<metric key>"`` of request ``j`` (the field's per-metric passes)."""

    requests: list[Request] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    sets: list[tuple[EvalSet, EvalContext, list[tuple[str, Metric]], list[list[list[int]]]]] = field(
        default_factory=list)


def plan(bundle: ModelBundle, eval_sets: Sequence[EvalSet]) -> Plan:
    """Build every metric's requests for ``eval_sets`` (see :class:`Plan`)."""
    out = Plan()
    for es in eval_sets:
        ctx = EvalContext(bundle.prompt, bundle.tokenizer, es.max_new_tokens)
        metrics = [(spec.result_key, build_metric(spec.name, dict(spec.options))) for spec in es.metrics]
        slots: list[list[list[int]]] = []
        for item in es.items:
            per_metric = []
            for key, metric in metrics:
                reqs = metric.requests(item, ctx)
                per_metric.append(list(range(len(out.requests), len(out.requests) + len(reqs))))
                out.requests.extend(reqs)
                out.labels.extend([f"{es.name}/{key}"] * len(reqs))
            slots.append(per_metric)
        out.sets.append((es, ctx, metrics, slots))
    return out


def evaluate(bundle: ModelBundle, eval_sets: Sequence[EvalSet], layer: AnsweringLayer,
             ) -> tuple[dict[str, SetResult], list[dict[str, Any]]]:
    """Evaluate ``bundle`` on ``eval_sets``; returns per-set results and per-item samples."""
    p = plan(bundle, eval_sets)
    responses = layer.answer(p.requests)

    results: dict[str, SetResult] = {}
    samples: list[dict[str, Any]] = []
    for es, ctx, metrics, slots in p.sets:
        res = SetResult(es.name, [it.id for it in es.items])
        for key, _ in metrics:
            res.per_item[key] = []
        for item, per_metric in zip(es.items, slots):
            sample: dict[str, Any] = {
                "set": es.name, "id": item.id, "prompt": ctx.prompt_for(item),
                "question": item.question, "reference": item.answer, "generation": None,
                "metrics": {},
            }
            for (key, metric), idx in zip(metrics, per_metric):
                resp = [responses[i] for i in idx]
                value = metric.score(item, resp, ctx)
                res.per_item[key].append(value)
                sample["metrics"][key] = value
                for r in resp:
                    if isinstance(r, GenerateResponse) and sample["generation"] is None:
                        sample["generation"] = r.text
            samples.append(sample)
        for key, metric in metrics:
            res.aggregates[key] = metric.aggregate(res.per_item[key])
        results[es.name] = res
    return results, samples
