"""The attack contract, option parsing, and the before/after comparison.

An *attack* asks whether the forgotten knowledge comes back. It is a class registered in
``bench.registry.ATTACKS`` (one file per attack in ``bench/attacks/``) of one of two kinds:

* ``kind = "model"``: :meth:`Attack.apply` turns the unlearned model into an attacked one
  (quantized weights, a few relearning steps); it gets a freshly loaded copy and may change
  it in place;
* ``kind = "prompt"``: the weights stay; :meth:`Attack.transform` rewrites the eval sets'
  items (a prefix, the paraphrased question) and/or :meth:`Attack.apply` gives the bundle
  another prompt config. Only prompts change: item ids, answers and metrics stay.

Options are the class's ``__init__`` keyword parameters (typed, with defaults), set with
``--attack-set key=value`` (every selected attack that takes ``key``) or
``--attack-set NAME.key=value`` (one attack), checked exactly like a method's ``--set``
(:func:`bench.adapters.parse_options`), before any model is built. One option every attack
takes, handled by the engine: ``scope`` = ``forget`` (default: re-evaluate the sets with
``EvalSet.role == "forget"``) or ``all`` (every eval set of the step).

After an attack the engine re-evaluates the affected sets through the normal answering path
(:func:`bench.evaluate.plan` → answer → score; the request-cache keys differ because the
model fingerprint or the prompts differ), recomputes the task's derived nodes over them
(nodes whose inputs were not re-evaluated are left out), and records per metric key
(:func:`compare`):

* ``before``: the unattacked run's value (the last step's ``aggregates``);
* ``after``: the attacked model's value;
* ``recovery`` = ``after − before`` (in the metric's own units and direction);
* ``target``: the target run's value (the model before unlearning: ``references.target``),
  when known;
* ``undone`` = ``(after − before) / (target − before)``: the share of the unlearning the
  attack undid (0 = nothing came back, 1 = back at the target's value, < 0 = the attack
  moved further away, > 1 = past the target). Direction-free: it measures the way back
  towards the target whatever the metric's orientation. ``None`` when the target is
  unknown or ``|target − before| < MIN_GAP`` (the unlearning did not move that metric:
  there is nothing to undo).

``undone_median`` is the median ``undone`` over the metrics of the forget-role sets (keys
``<set>_<metric>``); an attack *undoes the forgetting* when ``undone_median >=
UNDONE_THRESHOLD`` (0.5): at least half of the forget metrics are at least half-way back
to the target. The median, not the mean: one metric that unlearning barely moved (a small
``target − before``, e.g. TOFU's forget truth ratio) gives a large, noisy share that must
not decide alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from bench.errors import BenchError
from bench.items import EvalSet, TaskData

MIN_GAP = 1e-6
UNDONE_THRESHOLD = 0.5
SCOPES = ("forget", "all")


@dataclass
class AttackContext:
    """What an attack may read: the task data, the sets it will be evaluated on, the run's
    seed, the step being attacked, and a log function."""

    data: TaskData
    eval_sets: list[EvalSet]
    seed: int = 0
    step: int = 0
    log: Any = print


class Attack:
    """Base class: subclasses set ``name``, ``description``, ``kind`` and implement
    :meth:`apply` (model attacks) or :meth:`transform` (prompt attacks)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    kind: ClassVar[str] = "model"  # "model" | "prompt"

    def __init__(self) -> None:
        self.info: dict[str, Any] = {}

    def options(self) -> dict[str, Any]:
        """The options this attack was built with (recorded in results)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and k != "info"}

    def check(self, data: TaskData, eval_sets: Sequence[EvalSet]) -> None:
        """Cheap checks at plan time (before any model is built); BenchError when unusable."""

    def apply(self, bundle: Any, ctx: AttackContext) -> Any:
        """The attacked bundle (``bundle`` is a fresh copy of the unlearned model)."""
        return bundle

    def transform(self, es: EvalSet, ctx: AttackContext) -> EvalSet:
        """The eval set as the attack asks it (default: unchanged)."""
        return es


def _scope_options(scope: Literal["forget", "all"] = "forget") -> None:
    """The options the engine handles for every attack (checked like the others)."""


@dataclass
class PlannedAttack:
    """An attack built with its options, ready to run."""

    name: str
    attack: Attack
    scope: str
    options: dict[str, Any] = field(default_factory=dict)  # every option, defaults filled in

    def record(self) -> dict[str, Any]:
        return {**self.options, "scope": self.scope}


def attack_options(cls: type) -> dict[str, tuple[Any, Any]]:
    """``{option: (type, default)}`` of attack class ``cls`` (its ``__init__`` keywords)."""
    from bench.adapters import method_options

    return method_options(cls.__init__, positional=1)


def split_attack_options(names: Sequence[str], raw: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """``--attack-set`` pairs distributed to the selected attacks: ``NAME.key`` goes to
    attack NAME; a plain ``key`` to every selected attack that takes it (``scope``: all).
    BenchError for a key no selected attack takes, or a NAME not selected."""
    from bench.registry import ATTACKS

    out: dict[str, dict[str, str]] = {n: {} for n in names}
    accepted = {n: set(attack_options(ATTACKS.get(n))) | {"scope"} for n in names}
    for key, value in raw.items():
        head, dot, tail = key.rpartition(".")
        if dot and head:
            if head not in out:
                raise BenchError(f"--attack-set {key}: attack '{head}' is not selected "
                                 f"(selected: {', '.join(names) or 'none'}; add --attack {head})")
            out[head][tail] = value
            continue
        takers = [n for n in names if key in accepted[n]]
        if not takers:
            if not names:
                raise BenchError(f"--attack-set {key}=...: no attack selected (add --attack NAME)")
            import difflib

            allk = sorted(set().union(*accepted.values()))
            close = difflib.get_close_matches(key, allk, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
            raise BenchError(f"no selected attack has option '{key}'; {hint}(accepted: {', '.join(allk)})")
        for n in takers:
            out[n][key] = value
    return out


def plan_attacks(names: Sequence[str], raw: Mapping[str, str], data: TaskData,
                 eval_sets: Sequence[EvalSet], defaults: Mapping[str, Any] | None = None,
                 ) -> list[PlannedAttack]:
    """The attacks ``names`` built with their typed options (``raw``: ``--attack-set``),
    checked against the task's data; ``defaults`` fill options the user did not set and the
    attack takes (e.g. the tiny alias' ``lr`` and the run's ``seed``). Nothing is built."""
    from bench.adapters import REQUIRED, parse_options
    from bench.registry import ATTACKS

    if len(set(names)) != len(names):
        dup = sorted({n for n in names if list(names).count(n) > 1})
        raise BenchError(f"--attack {dup[0]} given twice (each attack runs once per run)")
    per = split_attack_options(names, raw)
    out = []
    for name in names:
        cls = ATTACKS.get(name)
        mine = dict(per[name])
        scope = parse_options(_scope_options, {"scope": mine.pop("scope")} if "scope" in mine else {},
                              name, kind="attack", positional=0).get("scope", "forget")
        opts = attack_options(cls)
        given = parse_options(cls.__init__, mine, name, kind="attack", positional=1)
        for k, v in (defaults or {}).items():
            if k in opts and k not in given:
                given[k] = v
        full = {}
        for k, (_, default) in opts.items():
            if k in given:
                full[k] = given[k]
            elif default is REQUIRED:
                raise BenchError(f"attack '{name}' needs option '{k}' (--attack-set {name}.{k}=...)")
            else:
                full[k] = default
        try:
            attack = cls(**full)
        except (TypeError, ValueError) as e:
            raise BenchError(f"attack '{name}': {e}") from None
        affected = affected_sets(eval_sets, scope)
        if not affected:
            raise BenchError(f"attack '{name}': the task has no eval set with role 'forget' "
                             "(use --attack-set scope=all)")
        attack.check(data, affected)
        out.append(PlannedAttack(name, attack, scope, {**full, **attack.options()}))
    return out


def affected_sets(eval_sets: Sequence[EvalSet], scope: str) -> list[EvalSet]:
    """The sets an attack re-evaluates: the forget-role sets, or all (``scope="all"``)."""
    if scope not in SCOPES:
        raise BenchError(f"attack scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    return [es for es in eval_sets if scope == "all" or es.role == "forget"]


def restrict(res: Any, sets: Sequence[EvalSet], keep_derived: bool = True) -> Any:
    """``res`` (:class:`bench.graph.Results`) cut to the sets ``sets`` and, within each, to
    their items (by id, in their order), each metric re-aggregated by its own
    :meth:`Metric.aggregate` on the kept per-item values. An attack that evaluates fewer
    items (relearning holds its training slice out) is so compared on the same items.
    A set the run lacks, or whose items it lacks, is left out (its nodes go missing)."""
    from bench.evaluate import build_metric
    from bench.graph import Results
    from bench.task import SetResult

    out = {}
    for es in sets:
        r = res.sets.get(es.name)
        if r is None:
            continue
        ids = [it.id for it in es.items]
        if ids == list(r.item_ids):
            out[es.name] = r
            continue
        pos = {i: j for j, i in enumerate(r.item_ids)}
        if any(i not in pos for i in ids):
            continue
        per_item = {k: [v[pos[i]] for i in ids] for k, v in r.per_item.items()}
        aggs = {m.result_key: build_metric(m.name, dict(m.options)).aggregate(per_item[m.result_key])
                for m in es.metrics if m.result_key in per_item}
        out[es.name] = SetResult(es.name, ids, aggs, per_item)
    return Results(out, dict(res.derived) if keep_derived else {})


def baseline_values(nodes: Sequence[Any], me: Any, refs: Mapping[str, Any], sets: Sequence[EvalSet],
                    ) -> dict[str, Any]:
    """The headline values (derived nodes + ``<set>_<metric>``) of results ``me`` computed
    over exactly the attacked ``sets`` and their items, the other roles (``refs``) cut alike."""
    from bench.graph import aggregates

    runs = {role: restrict(r, sets) for role, r in refs.items()}
    runs["self"] = restrict(me, sets, keep_derived=False)
    values, _ = aggregates(list(nodes), runs)
    return values


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return None if math.isnan(float(v)) else float(v)


def compare(before: Mapping[str, Any], after: Mapping[str, Any], target: Mapping[str, Any] | None,
            keys: Sequence[str]) -> dict[str, dict[str, float | None]]:
    """Per key: ``before``, ``after``, ``recovery`` = after − before, ``target`` and
    ``undone`` = (after − before) / (target − before) (see the module docstring)."""
    out: dict[str, dict[str, float | None]] = {}
    for k in keys:
        b, a = _number(before.get(k)), _number(after.get(k))
        t = _number(target.get(k)) if target is not None else None
        rec = a - b if a is not None and b is not None else None
        undone = None
        if rec is not None and t is not None and abs(t - b) >= MIN_GAP:
            undone = rec / (t - b)
        out[k] = {"before": b, "after": a, "recovery": rec, "target": t, "undone": undone}
    return out


def undone_median(metrics: Mapping[str, Mapping[str, Any]], forget_keys: Sequence[str]) -> float | None:
    """Median ``undone`` over ``forget_keys`` that have one (``None`` when none has; the
    mean of the two middle values for an even count)."""
    import statistics

    vals = [metrics[k]["undone"] for k in forget_keys if k in metrics and metrics[k].get("undone") is not None]
    return statistics.median(vals) if vals else None


def metric_keys(sets: Sequence[EvalSet], after: Mapping[str, Any], derived_keys: Sequence[str],
                ) -> tuple[list[str], list[str]]:
    """``(keys, forget_keys)``: every ``<set>_<metric>`` of the re-evaluated sets, then the
    derived outputs that could be recomputed from them; the forget-role sets' keys."""
    keys, forget = [], []
    for es in sets:
        for m in es.metrics:
            k = f"{es.name}_{m.result_key}"
            keys.append(k)
            if es.role == "forget":
                forget.append(k)
    keys += [k for k in derived_keys if after.get(k) is not None and k not in keys]
    return keys, forget


__all__ = ["Attack", "AttackContext", "PlannedAttack", "plan_attacks", "compare", "undone_median",
           "affected_sets", "metric_keys", "split_attack_options", "attack_options",
           "MIN_GAP", "UNDONE_THRESHOLD"]
