"""The metric graph: derived metrics as nodes that name their inputs.

Item metrics (:class:`bench.metrics.base.Metric`) produce per-set results: per-item values
and a set aggregate under ``"<set>/<metric key>"``. A *derived* metric combines such
results — of this run or of a reference run — and never touches the model. A task declares
its derived metrics as :class:`Derived` nodes in ``TaskData.derived``; the engine computes
each once, in order, after scoring, and records it in ``results.json``.

Inputs are :class:`Ref` objects:

* ``Ref("forget/truth_ratio")`` — this run's per-item values of metric key ``truth_ratio``
  on set ``forget`` (a list in item order, ``None`` kept where a value is undefined);
* ``Ref("retain/rouge_l", per_item=False)`` — that set's aggregate (a float or ``None``);
* ``Ref("@mia_auc")`` — the output of an earlier node (``"@node.key"`` for one entry of a
  node whose function returns a mapping);
* ``role=`` names whose results: ``"self"`` (this run), ``"retain"`` (the retain-only
  reference model), ``"target"`` (the model before unlearning), ``"previous"`` (the
  previous step of a multi-step run), ``"retrained"`` (a model retrained without the forget
  set, e.g. MUSE's; a stored run given by the user).

An input may also be a mapping ``{label: Ref}`` (the function gets ``{label: value}``, e.g.
model utility's nine numbers). A node whose reference role is not available is recorded as
missing (``None``) with the reason in ``derived_notes``; it is never guessed. Per-item
inputs from another role must cover the same items as this run's set (same task, same
``--limit``), else :class:`BenchError`.

A node's function is a derived metric registered in ``METRICS`` (``kind = "derived"``, see
:mod:`bench.metrics.derived`); it is called as ``fn(**inputs, **options)``. It returns a
number (recorded under the node's ``key``) or a mapping (each entry recorded under its own
name, e.g. ``forget_quality`` and ``log10_forget_quality``). A warning the function
issues (``warnings.warn``) is recorded as the node's note, prefixed ``warning:``. A node
whose ``@`` input is a missing node of this run is missing too (its note says why).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.errors import BenchError

ROLES = ("self", "retain", "target", "previous", "retrained")

ROLE_HINTS = {
    "retain": "needs the retain-only reference run (bench prepare with an alias, or --reference RUN_DIR|MODEL)",
    "target": "needs the target run (the model before unlearning; known for prepared aliases)",
    "previous": "needs the previous step's results (the first step has none)",
    "retrained": "needs a retrained-model run (a task option: --task-set retrained=RUN_DIR)",
}


@dataclass(frozen=True)
class Ref:
    """One input of a derived node (see the module docstring)."""

    path: str
    role: str = "self"
    per_item: bool = True

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"Ref {self.path!r}: unknown role {self.role!r} (expected one of {', '.join(ROLES)})")
        if not self.path.startswith("@") and self.path.count("/") != 1:
            raise ValueError(f"Ref {self.path!r}: expected 'set/metric' or '@node'")

    @property
    def is_node(self) -> bool:
        return self.path.startswith("@")


@dataclass(frozen=True)
class Derived:
    """A derived-metric node: registered function ``name`` applied to ``inputs``.

    ``key`` names a scalar output (default ``name``); ``options`` are passed as keyword
    arguments and recorded. ``missing_hint``: what to do when an input is missing (e.g.
    which task option provides the set), appended to the node's note; not part of what is
    measured (not in :meth:`describe`).
    """

    name: str
    inputs: Mapping[str, Ref | Mapping[str, Ref]]
    options: Mapping[str, Any] = field(default_factory=dict)
    key: str | None = None
    missing_hint: str = ""

    @property
    def result_key(self) -> str:
        return self.key or self.name

    def refs(self) -> list[Ref]:
        out: list[Ref] = []
        for v in self.inputs.values():
            out.extend(v.values() if isinstance(v, Mapping) else [v])
        return out

    def roles(self) -> set[str]:
        return {r.role for r in self.refs()}

    def describe(self) -> dict[str, Any]:
        def one(r: Ref) -> str:
            agg = "" if r.per_item or r.is_node else " (aggregate)"
            return f"{r.role}:{r.path}{agg}"

        inputs = {k: ({lab: one(r) for lab, r in v.items()} if isinstance(v, Mapping) else one(v))
                  for k, v in self.inputs.items()}
        return {"name": self.name, "inputs": inputs, "options": dict(self.options)}


@dataclass
class Results:
    """What a derived node can read from one run (or one step of a run):
    ``sets[name]`` are :class:`bench.task.SetResult`, ``derived`` the flat node outputs."""

    sets: Mapping[str, Any]
    derived: Mapping[str, Any] = field(default_factory=dict)


class Missing(Exception):
    """An input is not available (a reference role absent, a set not evaluated)."""


def _value(ref: Ref, runs: Mapping[str, Results], me: Results) -> Any:
    run = runs.get(ref.role)
    if run is None:
        raise Missing(ROLE_HINTS.get(ref.role, f"needs the '{ref.role}' run"))
    if ref.is_node:
        name = ref.path[1:]
        if name in run.derived:
            return run.derived[name]
        raise Missing(f"{ref.role} run has no derived value '{name}'")
    set_name, key = ref.path.split("/")
    res = run.sets.get(set_name)
    if res is None:
        raise Missing(f"{ref.role} run has no eval set '{set_name}'")
    if not ref.per_item:
        if key not in res.aggregates:
            raise Missing(f"{ref.role} run has no metric '{key}' on set '{set_name}'")
        return res.aggregates[key]
    if key not in res.per_item:
        raise Missing(f"{ref.role} run has no metric '{key}' on set '{set_name}'")
    if ref.role != "self":
        mine = me.sets.get(set_name)
        if mine is not None and list(mine.item_ids) != list(res.item_ids):
            raise BenchError(
                f"{ref.role} run's set '{set_name}' holds other items than this run's "
                f"({len(res.item_ids)} vs {len(mine.item_ids)} items; same task, task options "
                "and --limit needed)")
    return list(res.per_item[key])


def compute(nodes: list[Derived], runs: Mapping[str, Results]) -> tuple[dict[str, Any], dict[str, str]]:
    """Compute ``nodes`` in order over ``runs`` (``runs["self"]`` is this run).

    Returns ``(values, notes)``: the flat outputs, and per missing output the reason.
    """
    from bench.registry import METRICS

    me = runs["self"]
    values: dict[str, Any] = dict(me.derived)
    notes: dict[str, str] = {}
    runs = {**runs, "self": Results(me.sets, values)}
    for node in nodes:
        fn = METRICS.get(node.name)
        if getattr(fn, "kind", None) != "derived":
            raise BenchError(f"metric '{node.name}' is not a derived metric; it cannot be a node")
        try:
            for r in node.refs():  # an earlier node of this run that is missing: so is this one
                name = r.path[1:].split(".")[0] if r.is_node else ""
                if r.is_node and r.role == "self" and name in notes and values.get(name) is None:
                    raise Missing(f"input '{r.path}' is missing ({notes[name]})")
            kwargs: dict[str, Any] = {}
            for arg, spec in node.inputs.items():
                if isinstance(spec, Mapping):
                    kwargs[arg] = {lab: _value(r, runs, me) for lab, r in spec.items()}
                else:
                    kwargs[arg] = _value(spec, runs, me)
        except Missing as e:
            values[node.result_key] = None
            notes[node.result_key] = f"{node.name}: {e}" + (f"; {node.missing_hint}" if node.missing_hint else "")
            for extra in getattr(fn, "outputs", ()):
                values.setdefault(extra, None)
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = fn(**kwargs, **dict(node.options))
        if caught:  # a node may warn (e.g. SemEval's MMLU gate): kept as its note
            notes[node.result_key] = "warning: " + "; ".join(str(w.message) for w in caught)
        if isinstance(out, Mapping):
            values.update(out)
        else:
            values[node.result_key] = out
        mine = out.get(node.result_key, 0) if isinstance(out, Mapping) else out
        if mine is None and node.result_key not in notes:
            empty = _none_inputs(kwargs)  # a missing value always says why
            if empty:
                notes[node.result_key] = f"{node.name}: input {', '.join(empty)} is missing (None)"
    return values, notes


def _none_inputs(kwargs: Mapping[str, Any]) -> list[str]:
    """The labels of a node's inputs that are ``None`` (a scalar, or a value of a labelled mapping)."""
    out = []
    for arg, v in kwargs.items():
        if v is None:
            out.append(arg)
        elif isinstance(v, Mapping):
            out.extend(lab for lab, x in v.items() if x is None)
    return out


def aggregates(nodes: list[Derived], runs: Mapping[str, Results]) -> tuple[dict[str, Any], dict[str, str]]:
    """A run's headline numbers: every node's outputs (in node order), then every set
    aggregate as ``<set>_<metric key>``; and the notes of missing node outputs."""
    values, notes = compute(nodes, runs)
    out = dict(values)
    for set_name, res in runs["self"].sets.items():
        for key, value in res.aggregates.items():
            out.setdefault(f"{set_name}_{key}", value)
    return out, notes
