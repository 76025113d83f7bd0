"""Evaluation: eval sets → requests → one answering pass → per-set scoring.

Metrics never call the model. Three stages, each a function a newcomer can read alone:

1. :func:`plan` — every metric of every eval set declares its requests (through the
   set's :class:`EvalContext`: format, stop strings, generation budget);
2. :func:`answer` — all requests of a run go to the answering layer in one call, so
   identical requests across metrics and sets are computed once and the backend batches
   across sets;
3. :func:`score` — after the backend is closed (its memory is free for model-based
   scorers), each metric scores a whole set at once (:meth:`Metric.score_set`) and
   aggregates it.

Derived metrics (the task's graph nodes) come after, in :mod:`bench.graph`.

Accounting (recorded by the run in ``results.json``): :meth:`Plan.sharing` shows, per
``"<set>/<metric>"``, how many of its requests start a model pass and how many reuse a pass
another metric already asked for; :func:`score` can fill ``timings`` with the scoring
seconds of each metric and of each metric family (the module a metric lives in:
``rouge``, ``mia``, ``closer_look``, ...) and the scorer models' usage.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.backends.cache import AnsweringLayer
from bench.items import EvalSet
from bench.metrics.base import EvalContext, Metric
from bench.model_bundle import ModelBundle
from bench.registry import METRICS
from bench.requests import GenerateResponse, Request, Response
from bench.task import SetResult


def build_metric(name: str, options: dict[str, Any]) -> Metric:
    cls = METRICS.get(name)
    if getattr(cls, "kind", "item") == "derived" or not isinstance(cls, type):
        raise ValueError(f"metric '{name}' is derived: declare it as a graph node (bench.graph.Derived)")
    return cls(**dict(options))


def context_for(bundle: ModelBundle, es: EvalSet) -> EvalContext:
    """The :class:`EvalContext` of eval set ``es`` for ``bundle``."""
    return EvalContext(bundle.prompt, bundle.tokenizer, es.max_new_tokens, tuple(es.stop), es.format)


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

    def sharing(self) -> dict[str, dict[str, Any]]:
        """Per label ``"<set>/<metric key>"``: ``requests`` it asked, ``new`` passes it
        started, ``shared_with`` ``{label: n}``: passes first asked by another label (in
        plan order), and ``repeated``: its own requests asked twice. A pass is a distinct
        ``Generate``, or a distinct (prompt, continuation) for ``loglikelihood`` and
        ``token_stats`` together (one forward item on the ``hf`` fast path; the answering
        layer dedupes identical requests, the backend merges the two likelihood kinds)."""
        first: dict[Any, str] = {}  # pass -> the label that asked for it first
        out: dict[str, dict[str, Any]] = {}
        for r, label in zip(self.requests, self.labels):
            row = out.setdefault(label, {"requests": 0, "new": 0, "shared_with": {}, "repeated": 0})
            row["requests"] += 1
            key = r if r.kind == "generate" else ("likelihood", r.prompt, r.continuation)
            if key not in first:
                first[key] = label
                row["new"] += 1
            elif first[key] == label:
                row["repeated"] += 1
            else:
                row["shared_with"][first[key]] = row["shared_with"].get(first[key], 0) + 1
        return out

    def tokens_hint(self) -> dict[str, int]:
        """Request counts per kind (for progress lines)."""
        out: dict[str, int] = {}
        for r in self.requests:
            out[r.kind] = out.get(r.kind, 0) + 1
        return out


def plan(bundle: ModelBundle, eval_sets: Sequence[EvalSet]) -> Plan:
    """Build every metric's requests for ``eval_sets`` (see :class:`Plan`)."""
    out = Plan()
    for es in eval_sets:
        ctx = context_for(bundle, es)
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


def answer(p: Plan, layer: AnsweringLayer) -> list[Response]:
    """The responses to every request of ``p`` (deduped, cached), in request order."""
    return layer.answer(p.requests)


def metric_family(metric: Metric) -> str:
    """A metric's family: the last part of its class's module (``bench.metrics.mia`` ->
    ``mia``; TE, CS and ES -> ``closer_look``)."""
    return type(metric).__module__.rsplit(".", 1)[-1]


def score(p: Plan, responses: Sequence[Response], log: Callable[[str], None] | None = None,
          timings: dict[str, Any] | None = None) -> tuple[dict[str, SetResult], list[dict[str, Any]]]:
    """Per-set results and per-item samples from the answered plan.

    Each metric scores its whole set at once (:meth:`Metric.score_set`), then aggregates.
    ``timings``, when given, receives wall seconds: ``score_by_metric_s`` (``"<set>/<key>"``),
    ``score_by_family_s`` (:func:`metric_family`) and ``scorers`` (what the scorer models
    ran meanwhile: :func:`bench.scorers.usage_since`; their time is inside their metric's).
    """
    from bench import scorers

    before = scorers.snapshot()
    by_metric: dict[str, float] = {}
    by_family: dict[str, float] = {}
    results: dict[str, SetResult] = {}
    samples: list[dict[str, Any]] = []
    for es, ctx, metrics, slots in p.sets:
        res = SetResult(es.name, [it.id for it in es.items])
        set_samples = []
        for item, per_metric in zip(es.items, slots):
            generation = None
            for idx in per_metric:
                for i in idx:
                    if isinstance(responses[i], GenerateResponse) and generation is None:
                        generation = responses[i].text
            set_samples.append({
                "set": es.name, "id": item.id, "prompt": ctx.prompt_for(item),
                "question": item.question, "reference": item.answer, "generation": generation,
                "metrics": {},
            })
        for m, (key, metric) in enumerate(metrics):
            t0 = time.perf_counter()
            per_item_responses = [[responses[i] for i in per_metric[m]] for per_metric in slots]
            values = list(metric.score_set(es.items, per_item_responses, ctx))
            if len(values) != len(es.items):
                raise RuntimeError(f"metric '{key}' on set '{es.name}' returned {len(values)} "
                                   f"values for {len(es.items)} items")
            res.per_item[key] = values
            for sample, v in zip(set_samples, values):
                sample["metrics"][key] = v
            res.aggregates[key] = metric.aggregate(values)
            note = getattr(metric, "note", None)
            if isinstance(note, str) and note:  # e.g. a scorer model that could not load
                res.notes[key] = note
            dt = time.perf_counter() - t0
            by_metric[f"{es.name}/{key}"] = round(dt, 4)
            fam = metric_family(metric)
            by_family[fam] = by_family.get(fam, 0.0) + dt
        samples.extend(set_samples)
        results[es.name] = res
    if timings is not None:
        timings["score_by_metric_s"] = by_metric
        timings["score_by_family_s"] = {k: round(v, 4) for k, v in sorted(by_family.items())}
        timings["scorers"] = scorers.usage_since(before)
    return results, samples


def evaluate(bundle: ModelBundle, eval_sets: Sequence[EvalSet], layer: AnsweringLayer,
             ) -> tuple[dict[str, SetResult], list[dict[str, Any]]]:
    """Plan, answer and score ``eval_sets`` for ``bundle`` (the backend stays open; the run
    pipeline closes it between answering and scoring)."""
    p = plan(bundle, eval_sets)
    return score(p, answer(p, layer))
