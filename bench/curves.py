"""Evaluation along training: ``bench run --eval-every N|epoch --eval-sets a,b``.

While a training-based method unlearns, the run evaluates the current model at each
checkpoint of :func:`bench.training.train` (the hook installed by
:func:`bench.training.training_hooks`) on a chosen subset of the step's eval sets, through
the normal pipeline (:func:`bench.run.answer_step` → :func:`bench.run.score_step`: plan,
answer through the request cache, score, derived nodes over the run's references), with the
run's backend and backend options. The method does not know.

Conventions
-----------
* Cadence: ``--eval-every N`` = every N optimizer steps of each ``train()`` call (the
  loop's ``checkpoint_every``), ``--eval-every epoch`` = at the end of each epoch
  (``checkpoint_each_epoch``). The early-stopping field ``TrainOptions.eval_every`` (the
  held-out *loss* cadence) is another thing and is not touched.
* Methods: ``none`` and methods registered with ``trains_in_place = False`` (``tv``,
  ``wme-*``: their training builds an intermediate model, not the unlearned one) are
  refused; a method that never calls :func:`bench.training.train` (a user adapter with its
  own loop) gets a note in its curve and in the log.
* Sets: ``--eval-sets forget,retain`` (names of the task's eval sets; every step of a
  multi-step task must have them). Default: the sets the task's frontier keys read
  (:func:`default_sets`; e.g. TOFU/synthetic: forget, retain, real_authors, world_facts for
  ``log10_forget_quality`` and ``model_utility``; MUSE: verbmem_forget, knowmem_retain),
  so each point has the frontier's two numbers.
* A point: ``{"train_step", "epoch" (epochs done, fractional), "train_call" (the train()
  call's desc), "sets": {"<set>/<metric key>": value}, "aggregates": {derived key:
  value} (the task's derived nodes that could be computed from the chosen sets and the
  references; ``<set>_<metric>`` duplicates left out), "model_fingerprint", "seconds"}``.
* results.json ``curves``: one entry per task step ``{"step", "index", "eval_every",
  "eval_sets", "points": [...]}`` (+ ``"note"`` when the method never reached a checkpoint:
  it does not train through :func:`bench.training.train`, or trained fewer steps than N).
* Undisturbed training: the module is evaluated in eval mode without gradients (the loop's
  checkpoint call) and in place when the backend would neither move nor cast it (``hf``
  with the module's dtype and device); otherwise, and always for a LoRA (peft) module, on a
  copy (merged for LoRA, as the final model is): one model's extra memory. The global RNG
  states (python, numpy, torch CPU and CUDA) are saved before and restored after, and the
  evaluation uses the thread count the run had before training (the loop trains small
  models on one thread). A run with ``--eval-every`` ends with the same weights and results
  as one without (tests/test_eval_every.py checks it). The last checkpoint of a method
  that returns its trained model is the final model (same fingerprint): its values are the
  final evaluation's, exactly when the chosen sets are all the step's sets, else up to the
  float rounding of another batching of the requests.
* Resume: each point is written at once (atomically) to ``<run>/curves/<k>.json``. A step
  resumed from its unlearned checkpoint keeps its finished curve; a step whose training
  reruns reuses a stored point whose model fingerprint matches (no re-evaluation).
* Run hash: ``eval_every`` and ``eval_sets`` are recorded in the config (under
  ``eval_along_training``: results' ``config.eval_sets`` already describes every set) and hashed into the
  run's directory name (only when given, so other runs keep theirs): they add content to
  results.json, so a run with a curve and one without are different runs, and the same
  command resumes the same directory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.lora import is_peft

EPOCH = "epoch"
SYNTAX = "a positive number of optimizer steps (e.g. 20) or 'epoch'"


@dataclass(frozen=True)
class CurvePlan:
    """What ``--eval-every`` / ``--eval-sets`` resolved to (checked, nothing built)."""

    every: int  # optimizer steps; 0 when only each epoch
    each_epoch: bool
    sets: tuple[str, ...]
    default: bool  # the sets are the default subset

    def record(self) -> dict[str, Any]:
        """The config entries (part of the run's hash)."""
        return {"eval_every": EPOCH if self.each_epoch else self.every, "eval_sets": list(self.sets)}


def parse_eval_every(value: Any) -> tuple[int, bool]:
    """``(every N steps, each epoch)`` of an ``--eval-every`` value: a positive integer (or
    its digits) or ``"epoch"``; BenchError otherwise."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in (EPOCH, "epochs", "each-epoch"):
            return 0, True
        if text.isdigit() and int(text) > 0:
            return int(text), False
    elif isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value, False
    raise BenchError(f"--eval-every must be {SYNTAX}, got {value!r}")


def split_names(value: Any) -> list[str]:
    """``--eval-sets`` as a list of names (a comma-separated string or a list)."""
    if isinstance(value, str):
        names = [x.strip() for x in value.split(",")]
    elif isinstance(value, (list, tuple)):
        names = [str(x).strip() for x in value]
    else:
        raise BenchError(f"--eval-sets must be comma-separated set names, got {value!r}")
    if not names or any(not n for n in names):
        raise BenchError(f"--eval-sets {value!r}: an empty set name")
    return list(dict.fromkeys(names))


def needed_sets(data: Any, keys: Sequence[str], eval_sets: Sequence[Any]) -> list[str]:
    """The eval sets (of this run, role ``self``) that results keys ``keys`` read: a
    ``<set>_<metric>`` key its set, a derived node's key the sets of its inputs (``@node``
    inputs followed); in eval-set order."""
    names = [es.name for es in eval_sets]
    nodes = list(getattr(data, "derived", []) or [])
    by_key: dict[str, Any] = {}
    for node in nodes:
        from bench.registry import METRICS

        fn = METRICS.get(node.name) if node.name in METRICS else None
        for k in (node.result_key, *getattr(fn, "outputs", ())):
            by_key.setdefault(k, node)
    found: set[str] = set()
    seen: set[str] = set()

    def visit(key: str) -> None:
        if key in seen:
            return
        seen.add(key)
        node = by_key.get(key)
        if node is None:
            for n in names:
                for es in eval_sets:
                    if es.name == n and any(key == f"{n}_{m.result_key}" for m in es.metrics):
                        found.add(n)
            return
        for r in node.refs():
            if r.role != "self":
                continue
            if r.is_node:
                visit(r.path[1:].split(".")[0])
            else:
                found.add(r.path.split("/")[0])

    for k in keys:
        if k:
            visit(k)
    return [n for n in names if n in found]


def default_sets(task: Any, data: Any, eval_sets: Sequence[Any]) -> list[str]:
    """The default ``--eval-sets``: the sets the task's frontier keys read; when that finds
    none, the sets with role ``forget`` and the first with role ``retain``."""
    got = needed_sets(data, list(getattr(task, "frontier", ()) or ()), eval_sets)
    if got:
        return got
    forget = [es.name for es in eval_sets if getattr(es, "role", "") == "forget"]
    retain = [es.name for es in eval_sets if getattr(es, "role", "") == "retain"][:1]
    return forget + retain or [es.name for es in eval_sets][:2]


def plan_curves(spec: Any, method_name: str, method_fn: Any, task: Any, data: Any,
                steps: Sequence[Any]) -> CurvePlan | None:
    """Check ``spec.eval_every`` / ``spec.eval_sets`` (BenchError naming the option) before any
    model is built; ``None`` without ``--eval-every``."""
    if spec.eval_every is None:
        if spec.eval_sets is not None:
            raise BenchError("--eval-sets given without --eval-every (the sets evaluated along training)")
        return None
    every, each_epoch = parse_eval_every(spec.eval_every)
    if method_name == "none" or getattr(method_fn, "trains_in_place", True) is False:
        why = ("evaluates the model as it is" if method_name == "none" else
               "edits weights after training intermediate models (its training is not the unlearning)")
        raise BenchError(f"--eval-every: method '{method_name}' does not train the model it returns "
                         f"({why}); nothing to evaluate along training")
    if spec.eval_sets is None:
        sets = default_sets(task, data, steps[0].eval_sets)
    else:
        sets = split_names(spec.eval_sets)
    for k, step in enumerate(steps):
        have = [es.name for es in step.eval_sets]
        for n in sets:
            if n not in have:
                where = f" at step {k + 1} ({step.name})" if len(steps) > 1 else ""
                raise BenchError(f"--eval-sets: task '{spec.task}' has no eval set '{n}'{where} "
                                 f"(it has: {', '.join(have)})")
    return CurvePlan(every, each_epoch, tuple(sets), spec.eval_sets is None)


def describe(plan: CurvePlan) -> str:
    when = "each epoch" if plan.each_epoch else f"every {plan.every} optimizer steps"
    return f"{when} on {', '.join(plan.sets)}{' (default: the frontier sets)' if plan.default else ''}"


# --------------------------------------------------------------------------- recording


def _rng_state() -> tuple[Any, ...]:
    import random

    import numpy as np
    import torch

    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[Any, ...]) -> None:
    import random

    import numpy as np
    import torch

    py, npy, cpu, cuda = state
    random.setstate(py)
    np.random.set_state(npy)
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


def evaluates_in_place(module: Any, backend: str, options: dict[str, Any]) -> bool:
    """True when answering with ``backend`` (options ``options``) would neither move nor
    cast ``module`` (nor see adapters): the ``hf`` backend on the module's dtype and device."""
    import torch

    if backend != "hf" or is_peft(module):
        return False
    p = next(iter(module.parameters()), None)
    if p is None:
        return False
    if str(options.get("dtype", "float32")) != str(p.dtype).removeprefix("torch."):
        return False
    want = torch.device(options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
    if want.type != p.device.type:
        return False
    if want.type == "cuda":
        index = want.index if want.index is not None else torch.cuda.current_device()
        return index == p.device.index
    return True


class CurveRecorder:
    """The checkpoint hook of one step of a run (see the module docstring): evaluates,
    appends a point, writes ``<run>/curves/<k>.json``."""

    def __init__(self, rp: Any, k: int, plan: CurvePlan, run_dir: Path,
                 references: Callable[[dict[str, Any]], dict[str, Any]], log: Callable[[str], None]):
        import torch

        from bench.paths import atomic_write_json  # noqa: F401  (fail early if missing)

        self.rp, self.k, self.plan, self.log = rp, k, plan, log
        step = rp.steps[k]
        self.sets = [es for es in step.eval_sets if es.name in plan.sets]
        self.path = Path(run_dir) / "curves" / f"{k}.json"
        self.references = references
        self._refs: dict[str, Any] | None = None
        self.threads = torch.get_num_threads()  # before training (which may use one thread)
        self.calls = 0
        self.points: list[dict[str, Any]] = []
        self.stored = self._load()

    def _load(self) -> list[dict[str, Any]]:
        import json

        if not self.path.exists():
            return []
        try:
            return list(json.loads(self.path.read_text()).get("points") or [])
        except (ValueError, AttributeError):
            return []

    def doc(self, points: list[dict[str, Any]] | None = None, note: str | None = None) -> dict[str, Any]:
        step = self.rp.steps[self.k]
        out = {"step": step.name, "index": self.k, **self.plan.record(),
               "points": self.points if points is None else points}
        if note:
            out["note"] = note
        return out

    def __call__(self, step: int, bundle: Any) -> None:
        import torch

        from bench.model_bundle import ModelBundle
        from bench.paths import atomic_write_json
        from bench.training import checkpoint_info

        info = checkpoint_info() or {}
        self.calls += 1
        t0 = time.time()
        rng = _rng_state()
        threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        spec = self.rp.spec
        try:
            module = bundle.module
            if evaluates_in_place(module, self.rp.backend_name, dict(spec.backend_options)):
                how = "in place"
            else:
                import copy

                from bench.lora import merge

                how = "on a copy"
                module = merge(copy.deepcopy(module)) if is_peft(module) else copy.deepcopy(module)
            ev = ModelBundle(module, bundle.tokenizer, bundle.prompt, bundle.name, {})
            fp = ev.fingerprint()
            call = str(info.get("desc", ""))
            old = next((p for p in self.stored if p.get("train_step") == step and p.get("train_call") == call
                        and p.get("model_fingerprint") == fp), None)
            if old is not None:
                point = old
                how = "stored"
            else:
                point = self._evaluate(ev, step, info, fp)
            del ev, module
        finally:
            torch.set_num_threads(threads)
            _set_rng_state(rng)
        point["seconds"] = point.get("seconds", round(time.time() - t0, 3))
        self.points.append(point)
        atomic_write_json(self.path, self.doc())
        shown = ", ".join(f"{k} {v:.4f}" for k, v in list(point["sets"].items())[:4] if isinstance(v, (int, float)))
        self.log(f"curve: {call or 'train'} step {step} (epoch {point.get('epoch')}, {how}): {shown}")

    def _evaluate(self, ev: Any, step: int, info: dict[str, Any], fp: str) -> dict[str, Any]:
        from bench.run import answer_step, score_step

        t0 = time.time()
        if self._refs is None:
            self._refs = self.references(ev.prompt.to_dict())
        p, responses, _ = answer_step(self.rp, ev, self.sets, lambda s: None)
        sets, _, agg, _ = score_step(self.rp, p, responses, self._refs)
        values = {f"{n}/{key}": v for n, r in sets.items() for key, v in r.aggregates.items()}
        flat = {f"{n}_{key}" for n, r in sets.items() for key in r.aggregates}
        derived = {key: v for key, v in agg.items() if key not in flat and v is not None}
        return {"train_step": step, "epoch": info.get("epoch"), "train_call": str(info.get("desc", "")),
                "sets": values, "aggregates": derived, "model_fingerprint": fp,
                "seconds": round(time.time() - t0, 3)}

    def finish(self, method: str) -> dict[str, Any]:
        """The step's curve after unlearning (the stored one when the step resumed from its
        unlearned checkpoint), with a note when no checkpoint was reached."""
        from bench.paths import atomic_write_json

        if self.calls == 0 and self.stored:
            return self.doc(self.stored)
        note = None
        if self.calls == 0:
            note = (f"method '{method}' reached no checkpoint: it does not train through "
                    "bench.training.train, or trained fewer optimizer steps than --eval-every")
            self.log(f"curve: note: {note}")
        doc = self.doc(note=note)
        atomic_write_json(self.path, doc)
        return doc
