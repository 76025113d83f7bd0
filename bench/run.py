"""Run orchestration, one named stage after another (:func:`run` reads top to bottom):

    plan     check everything cheap: task + task options, data, method + options, backend
             + options, the model's path (:func:`plan_run`; nothing is built yet)
    models   prepare a base alias (target and retain-only models, cached), resolve the
             reference runs (:func:`resolve_models`)
    for each step of the task (one for most tasks; continual / sustainability have many):
      unlearn  the method on this step's forget / retain splits, from the previous step's
               model (:func:`unlearn_step`; checkpointed)
      answer   every request of the step's eval sets, through the dedupe + cache layer; the
               backend is closed afterwards (:func:`answer_step`)
      score    item metrics per set, then the task's derived nodes over this run and its
               references (:func:`score_step`)
      write    the step's results, atomically (``<run>/steps/<k>.json``)
    attacks  ``--attack``: each attack on the last step's model, the affected sets answered
             and scored again, before/after/recovery recorded (:func:`attack_step`)
    write    ``results.json`` (one row per step) + ``samples.jsonl`` (:func:`write_results`)

A run directory's name is derived from the run's spec hash; its outputs are written
atomically, and a run is resumable:

* prepared models (target and retain-only) and reference runs are cached by content
  (``$BENCH_CACHE``) and reused, never silently recomputed;
* each step's unlearned model is checkpointed to ``<run>/.partial/step-<k>/model`` before
  evaluation, and each finished step's results to ``<run>/steps/<k>.json``: a killed run
  resumes at the first unfinished step, from the last finished step's model;
* answers are stored in the request cache as they are computed, so a rerun reads the
  finished ones instead of recomputing them;
* a finished run (``results.json`` present) is skipped unless ``overwrite``.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.items import Item, Step, TaskData
from bench.paths import atomic_dir, atomic_write_json, atomic_write_text, cache_dir, cached_dir
from bench.registry import BACKENDS, TASKS
from bench.task import SetResult, Task

Log = Callable[[str], None]


@dataclass
class RunSpec:
    """Everything that defines a run (and, hashed, names its directory)."""

    task: str
    method: str = "none"
    model: str = "tiny"
    data_dir: str | None = None
    backend: str = "hf"
    backend_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    limit: int | None = None
    options: dict[str, str] = field(default_factory=dict)  # --set key=value (raw strings)
    task_options: dict[str, str] = field(default_factory=dict)  # --task-set key=value
    step_reference: str = "previous"  # multi-step: a method's reference is the initial or previous model
    out: str = "reports/runs"
    as_is: bool = False  # use --model as the target even when it is a base alias
    reference: str | None = None  # retain-only reference: a run dir or a model
    prompt_style: str = "auto"
    system_prompt: str | None = None  # chat styles: the system turn (bench.prompts)
    train_limit: int | None = None  # the method sees the first N forget / retain items only
    prepare_limit: int | None = None  # prepared models: forget + first N retain items / first N retain
    prepare_options: dict[str, str] = field(default_factory=dict)  # --prepare-set key=value (fine-tuning)
    cache: bool = True
    overwrite: bool = False
    save_model: bool = False
    original: str | None = None  # θ0, the model before fine-tuning on the task (task vectors, WME)
    attacks: list[str] = field(default_factory=list)  # --attack NAME (repeatable)
    attack_options: dict[str, str] = field(default_factory=dict)  # --attack-set [NAME.]key=value
    eval_every: int | str | None = None  # --eval-every N|epoch: evaluate along training (bench.curves)
    eval_sets: list[str] | str | None = None  # --eval-sets a,b: the sets of those evaluations


@dataclass
class MethodContext:
    """Extra inputs for methods that need more than (model, forget, retain).

    Passed as ``ctx=`` to adapters whose signature has a ``ctx`` parameter.
    """

    task: str
    seed: int
    data: TaskData
    refusals: list[str] = field(default_factory=list)
    original_model: str | None = None  # θ0 for task-vector style methods, when known
    step: int = 0  # index of the step being unlearned (multi-step tasks), from 0
    steps: int = 1  # number of steps of the task
    step_reference: str = "previous"  # "initial" | "previous": what a reference model means
    initial_model: str | None = None  # the target model before any step (a directory)


@dataclass
class Prepared:
    """The prepared target and retain-only models and their reference runs. ``target_run``
    is None while the prepare worker still evaluates the target (``prepare(overlap=True)``):
    :meth:`settle` waits for it."""

    target_dir: Path
    retain_dir: Path
    target_run: Path | None
    retain_run: Path
    worker: Any = field(default=None, repr=False)  # the bench.prepare_worker.Worker evaluating the target
    log: Log | None = field(default=None, repr=False)

    def settle(self) -> Path:
        """The target's reference run, waiting for the worker's evaluation when it is still
        pending; then logs :func:`memorisation_line`."""
        if self.target_run is None:
            worker, self.worker = self.worker, None
            self.target_run = Path(worker.result())  # a failure closes it and raises
            worker.close()
            line = memorisation_line(self.target_run, self.retain_run)
            if line and self.log is not None:
                self.log(line)
        return self.target_run

    def close(self) -> None:
        """Stop a worker still evaluating the target (the run ended without :meth:`settle`)."""
        if self.worker is not None:
            self.worker.close(stop=True)
            self.worker = None


def _seed_all(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _items_hash(items: Sequence[Item]) -> str:
    """A short hash of what fine-tuning reads from a split (:func:`bench.training.encode_pairs`):
    each item's question and answer, the split's format, and a "chat" item's answer lead.
    A "model"-format split hashes its (question, answer) pairs alone (its keys as before)."""
    from bench.items import split_format
    from bench.provenance import spec_hash

    fmt = split_format(items)
    pairs = [(it.question, it.answer) for it in items]
    if fmt == "model":
        return spec_hash(pairs)[:12]
    leads = [str(it.meta.get("answer_lead", "")) for it in items] if fmt == "chat" else []
    return spec_hash({"format": fmt, "items": pairs, "answer_leads": leads})[:12]


def _slug(text: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "-" for c in text)
    return keep.strip("-")[-40:] or "model"


def build_task(name: str, raw_options: dict[str, str]) -> Task:
    """Task ``name`` built with its ``--task-set`` options, typed and checked like ``--set``."""
    from bench.adapters import parse_options

    cls = TASKS.get(name)
    opts = parse_options(cls.__init__, raw_options, name, kind="task", positional=1)
    return cls(**opts)


def load_task(spec: RunSpec) -> tuple[Task, TaskData]:
    task = build_task(spec.task, dict(spec.task_options))
    data_dir = Path(spec.data_dir).expanduser() if spec.data_dir else None
    if data_dir is not None and not data_dir.exists():
        raise BenchError(f"data directory '{spec.data_dir}' does not exist")
    data = task.load(data_dir, spec.limit)
    if spec.limit is not None:  # a per-task alias (tiny) is built from the data without the limit
        from bench.models import UNLIMITED

        data.extras[UNLIMITED] = _LoadUnlimited(task, data_dir)
    return task, data


class _LoadUnlimited:
    """``task.load(data_dir, None)``, loaded on the first call and kept; pickled without
    what it loaded (a prepare worker receives the task data)."""

    def __init__(self, task: Task, data_dir: Path | None) -> None:
        self.task, self.data_dir, self.data = task, data_dir, None

    def __call__(self) -> TaskData:
        if self.data is None:
            self.data = self.task.load(self.data_dir, None)
        return self.data

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "data": None}


# --------------------------------------------------------------------------- prepare

# Prepared models are part of the task's target, not of a run: they are trained with one
# fixed seed, so every --seed of a sweep unlearns the same target (the cache key has no seed).
PREPARE_SEED = 0


def finetune_settings(alias: Any) -> dict[str, Any]:
    base = {"epochs": 5, "lr": 1e-5, "batch_size": 16}  # TOFU fine-tuning scale (locuslab/tofu)
    if alias is not None:
        base.update(dict(alias.finetune))
    return base


def _prepare_options(epochs: int = 5, lr: float = 1e-5, batch_size: int = 16, grad_accum: int = 1,
                     weight_decay: float = 0.0, warmup_epochs: float = 0.0, max_length: int = 512,
                     max_steps: int | None = None, max_grad_norm: float | None = 1.0, optimizer: str = "adamw",
                     device: str = "auto", precision: str = "fp32", grad_checkpointing: bool = False,
                     lora_r: int = 0, lora_alpha: float = 16.0, lora_targets: str = "all-linear",
                     step_budget: int | None = None) -> None:
    """The options ``--prepare-set`` may give :func:`bench.training.finetune` (its own and
    the :class:`bench.training.TrainOptions` fields that make sense for fine-tuning a
    target, and ``step_budget``: :func:`split_settings`); seed, progress and the
    unlearning-only fields (early stopping, checkpoints, length grouping) are fixed by
    bench prepare. Only the names and annotations are read (the values come from
    :func:`finetune_settings` and the options given)."""


def split_settings(ft: dict[str, Any], n_items: int) -> dict[str, Any]:
    """The fine-tuning settings of one prepared model of ``n_items`` examples: ``ft`` with
    its ``step_budget`` (optimizer steps; an alias's, or ``--prepare-set step_budget=N``)
    turned into epochs — ``min(epochs, round(budget / steps per epoch))``, at least 1 —
    so that a large task trains fewer epochs than a small one. No budget (or none): ``ft``."""
    out = dict(ft)
    budget = out.pop("step_budget", None)
    if budget is None:
        return out
    per_epoch = math.ceil(n_items / (int(out.get("batch_size", 16)) * int(out.get("grad_accum", 1))))
    out["epochs"] = max(1, min(int(out["epochs"]), round(budget / max(1, per_epoch))))
    return out


def prepare_overrides(raw: dict[str, str] | None) -> dict[str, Any]:
    """``--prepare-set`` typed by :func:`_prepare_options`'s annotations (they override
    :func:`finetune_settings`); a BenchError names an unknown key or a bad value."""
    if not raw:
        return {}
    from bench.adapters import parse_options

    fixed = sorted(set(raw) & {"seed", "desc", "progress"})
    if fixed:
        raise BenchError(f"--prepare-set: option '{fixed[0]}' is fixed by bench prepare "
                         "(accepted: epochs, lr, batch_size, grad_accum, weight_decay, max_steps, ...)")
    return parse_options(_prepare_options, dict(raw), "--prepare-set", kind="prepare", positional=0)


def prepare_splits(data: TaskData, limit: int | None) -> tuple[Sequence[Item], Sequence[Item]]:
    """The (target, retain-only) fine-tuning items: ``(full, retain)``, or with
    ``--prepare-limit N`` ``(forget + retain[:N], retain[:N])`` — a quick pair that, like
    the full one, differs only by the forget set (every forget item stays in the target).
    Each keeps its split's format (``full``'s for the target, ``retain``'s for the other)."""
    from bench.items import Split, split_format

    if limit is None:
        return data.full, data.retain
    retain = list(data.retain)[:limit]
    return (Split(list(data.forget) + retain, format=split_format(data.full)),
            Split(retain, format=split_format(data.retain)))


def _finetune_into(args: tuple[Any, ...], tmp: Path) -> None:
    """Fine-tune a fresh copy of the base model on the items and save it into ``tmp`` (the
    body of one prepared model; a top-level function so a worker process can run it).
    ``args``: base path, prompt style, system prompt, model name, split, items, fine-tuning
    settings, provenance fields."""
    base_path, prompt_style, system_prompt, model_name, split, items, ft, meta = args
    from bench import models
    from bench.training import finetune

    t0 = time.time()
    bundle = models.load_bundle(base_path, prompt_style=prompt_style, system_prompt=system_prompt, name=model_name)
    _seed_all(PREPARE_SEED)
    finetune(bundle, items, seed=PREPARE_SEED, desc=f"prepare {split} model ({model_name}, {len(items)} QA)", **ft)
    models.save_bundle(bundle, tmp)
    atomic_write_json(tmp / "bench_prepared.json", {
        **meta, "split": split, "items": len(items), "finetune": ft, "seconds": round(time.time() - t0, 2),
    })


def _build_cached(target: Path, *args: Any) -> Path:
    """``target`` if it is there, else :func:`_finetune_into` it (atomically: a kill leaves no half model)."""
    from functools import partial

    return cached_dir(target, partial(_finetune_into, args))


def parallel_prepare_ok(base_path: Path | str) -> bool:
    """Whether the two prepared models may be fine-tuned side by side, one per CPU core: only
    for a small local model (safetensors under ~80 MB: it trains on one thread, see
    :data:`bench.threads.SMALL_MODEL_PARAMS`) on CPU with at least two cores;
    ``$BENCH_PREPARE_PARALLEL=0`` turns it off. Each model trains on one thread either way,
    so the weights are the same bit for bit as one after the other."""
    files = list(Path(base_path).glob("*.safetensors")) if Path(base_path).is_dir() else []
    return bool(files) and sum(f.stat().st_size for f in files) <= 80_000_000 and _two_cpu_cores()


def _two_cpu_cores() -> bool:
    """Two CPU cores to train on, no GPU, and ``$BENCH_PREPARE_PARALLEL`` not off."""
    import os

    if os.environ.get("BENCH_PREPARE_PARALLEL", "1").lower() in ("0", "false", "off", "no"):
        return False
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    if cores < 2:
        return False
    try:
        import torch

        return not torch.cuda.is_available()
    except ImportError:
        return False


def _early_worker(spec: RunSpec, task: Task, data: TaskData) -> Any:
    """A :class:`bench.prepare_worker.Worker` started now, when the base model is a small
    alias not yet built: building it takes seconds on one core, and both prepared models
    will then be new, so the worker's imports overlap the build. None otherwise."""
    from bench import models

    alias = models.ALIASES.get(spec.model)
    if alias is None or not alias.small or models.alias_path(spec.model, data, task.family).exists() \
            or not _two_cpu_cores():
        return None
    from bench.prepare_worker import Worker

    return Worker()


def prepare(spec: RunSpec, task: Task, data: TaskData, log: Log = print, overlap: bool = False) -> Prepared:
    """Build (or reuse) the target and retain-only models of ``task`` from base ``spec.model``,
    and their reference evaluations (ordinary ``method none`` runs, cached). When both models
    must be built from a small model on a multi-core CPU, the target is fine-tuned in a
    worker process (started before the base model is built when that is still to come:
    its imports overlap the build) while this one fine-tunes and evaluates the retain-only
    model (:func:`parallel_prepare_ok`). With ``overlap`` (and the ``hf`` backend) the worker
    then evaluates the target too, while the caller goes on (unlearning it): the returned
    ``target_run`` is None until :meth:`Prepared.settle`; the caller must settle or close it."""
    from bench import checks

    checks.check_backend_available(spec.backend)  # the reference runs need it: fail before training
    checks.check_limit(spec.prepare_limit, "--prepare-limit")
    overrides = prepare_overrides(spec.prepare_options)  # checked before any build
    worker = _early_worker(spec, task, data)
    try:
        return _prepare(spec, task, data, log, overrides, worker, overlap and spec.backend == "hf")
    finally:
        if worker is not None and not worker.used:
            worker.close()  # started early, then not needed (a model was cached)


def _prepare(spec: RunSpec, task: Task, data: TaskData, log: Log, overrides: dict[str, Any],
             worker: Any, overlap: bool) -> Prepared:
    from bench import models
    from bench.provenance import dir_fingerprint, spec_hash

    base_path, alias = models.resolve(spec.model, data, task.family)
    ft = {**finetune_settings(alias), **overrides}
    base_fp = dir_fingerprint(base_path)[:10]
    root = cache_dir() / "prepared" / task.family / f"{_slug(spec.model)}-{base_fp}"
    prompt_key = {k: v for k, v in (("prompt_style", spec.prompt_style), ("system_prompt", spec.system_prompt))
                  if v not in (None, "auto")}  # empty for the defaults: cache keys unchanged
    ft_key = json.dumps({**ft, **prompt_key}, sort_keys=True)
    meta = {"base": spec.model, "base_fingerprint": base_fp, "task_family": task.family}

    replay = models.general_knowledge(data) if alias is not None and alias.replay_general_knowledge else []
    def with_replay(items: Any) -> Any:  # general-knowledge QA mixes only into QA splits
        from bench.items import split_format

        # an empty split (RWKU has no retain corpus) takes the replay alone: its reference
        # model is the base taught general knowledge only, never the forget set
        if not replay or (len(items) and split_format(items) != "model"):
            return items
        return list(items) + replay

    full_items, retain_items = prepare_splits(data, spec.prepare_limit)
    jobs = {"full": with_replay(full_items), task.reference_key or "retain": with_replay(retain_items)}
    paths = {split: root / f"{split}-{_items_hash(items)}-{spec_hash(ft_key)[:8]}" for split, items in jobs.items()}
    todo = []
    for split, items in jobs.items():
        if paths[split].exists():
            log(f"prepare: reusing {split} model {paths[split]}")
        else:
            log(f"prepare: fine-tuning the {split} model from {spec.model} on {len(items)} items "
                f"({', '.join(f'{k} {v}' for k, v in split_settings(ft, len(items)).items())})")
            todo.append(split)

    def args(split: str) -> tuple[Any, ...]:
        return (str(base_path), spec.prompt_style, spec.system_prompt, spec.model, split, jobs[split],
                split_settings(ft, len(jobs[split])), meta)

    target_dir, retain_dir = (paths[s] for s in jobs)
    retain_run = None
    if len(todo) == 2 and parallel_prepare_ok(base_path):
        # the worker takes the larger target; here the retain-only model is trained and
        # evaluated meanwhile (its reference run does not need the target)
        full, ref = todo
        log(f"prepare: the {full} model trains in a worker process beside the {ref} model (one core each)")
        if worker is None:
            from bench.prepare_worker import Worker

            worker = Worker()
        worker.submit(f"building {paths[full].name}", "build", (str(paths[full]), args(full)))
        try:
            _build_cached(paths[ref], *args(ref))
            retain_run = reference_run(spec, str(retain_dir), task, data, log)
            worker.result()
        except BaseException:
            worker.close(stop=True)
            raise
        if overlap:  # the worker evaluates the target while the caller unlearns it
            log(f"prepare: the {full} model's reference run is evaluated in the worker meanwhile")
            worker.submit(f"evaluating {target_dir.name}", "reference",
                          (spec, task, data, str(target_dir), str(retain_run)))
            return Prepared(target_dir, retain_dir, None, retain_run, worker, log)
        worker.close()
    else:
        for split in todo:
            _build_cached(paths[split], *args(split))
    if retain_run is None:
        retain_run = reference_run(spec, str(retain_dir), task, data, log)
    target_run = reference_run(spec, str(target_dir), task, data, log, reference=str(retain_run))
    line = memorisation_line(target_run, retain_run)
    if line:
        log(line)
    return Prepared(target_dir, retain_dir, target_run, retain_run)


MEMORISED_GAP = 0.05  # forget ROUGE-L of the target minus the retain-only model's, below which prepare warns


def memorisation_line(target_run: Path, retain_run: Path) -> str | None:
    """One line comparing the forget-set ROUGE-L (the ``forget_rouge_l`` aggregate, higher =
    more of the answer reproduced) of the prepared target with the retain-only model's: the
    check that the target has memorised what it is to forget. It says so when the gap is
    under :data:`MEMORISED_GAP` (unlearning such a target measures little). None when a
    task has no such aggregate."""
    vals = []
    for d in (target_run, retain_run):
        try:
            vals.append(json.loads((Path(d) / "results.json").read_text())["aggregates"].get("forget_rouge_l"))
        except (OSError, ValueError, KeyError, AttributeError):
            return None
    if any(not isinstance(v, (int, float)) for v in vals):
        return None
    t, r = vals
    line = f"prepare: forget ROUGE-L {t:.3f} for the target vs {r:.3f} for the retain-only model"
    if t - r < MEMORISED_GAP:
        return (line + f": the target has barely memorised its forget set (gap under {MEMORISED_GAP}); "
                "unlearning it measures little. A larger model, more epochs (--prepare-set epochs=N "
                "step_budget=none) or a fine-tuned model given as --model with --as-is")
    return line


def reference_run(spec: RunSpec, model: str, task: Task, data: TaskData, log: Log,
                  reference: str | None = None) -> Path:
    """Evaluate ``model`` as it is on ``spec``'s task (same data, task options, prompts,
    backend and --limit): an ordinary cached ``method none`` run."""
    from dataclasses import replace

    # seed fixed like the prepared models': every --seed of a sweep shares one reference run
    ref_spec = replace(spec, method="none", model=model, options={}, out=str(cache_dir() / "runs"), seed=PREPARE_SEED,
                       as_is=True, reference=reference, overwrite=False, save_model=False,
                       attacks=[], attack_options={}, train_limit=None, eval_every=None, eval_sets=None,
                       prepare_limit=None, prepare_options={})
    return run(ref_spec, log=log, _data=(task, data))


# --------------------------------------------------------------------------- stages


@dataclass
class RunPlan:
    """What :func:`plan_run` checked and resolved, before any model is built."""

    spec: RunSpec
    task: Task
    data: TaskData
    method_name: str
    method_fn: Callable[..., Any]
    options: dict[str, Any]
    backend_name: str
    alias: Any
    model_path: Path | str | None
    steps: list[Step]
    original: Path | str | None = None  # θ0 (--original; a prepared alias's base model is added later)
    needs_original: bool = False  # the method edits with task vectors (tv, wme-*)
    curves: Any = None  # bench.curves.CurvePlan: --eval-every (None without)


@dataclass
class Models:
    """The target model and the reference runs of a run."""

    target: Path | str
    prepared: Prepared | None
    references: dict[str, Path]  # role -> run directory ("retain", "target")
    static: tuple[str, ...] = ()  # roles given by the task (Task.reference_runs): one run for every step
    original: Path | str | None = None  # θ0 for task-vector methods, when known

    def settle(self) -> dict[str, Path]:
        """``references``, with the target's added once the prepare worker has evaluated it
        (:meth:`Prepared.settle`: waits for it when it is still running)."""
        if self.prepared is not None and self.prepared.target_run is None:
            self.references["target"] = self.prepared.settle()
        return self.references

    def close(self) -> None:
        """Stop the prepare worker if it still evaluates the target (the run failed)."""
        if self.prepared is not None:
            self.prepared.close()


def plan_run(spec: RunSpec, log: Log, _data: tuple[Task, TaskData] | None = None) -> RunPlan:
    """Stage 1: validate everything cheap before any expensive step."""
    from bench import checks, models
    from bench.adapters import effective_options, method_options, parse_options, resolve_method

    if spec.step_reference not in ("initial", "previous"):
        raise BenchError(f"step_reference must be 'initial' or 'previous', got {spec.step_reference!r}")
    checks.check_seed(spec.seed)
    checks.check_limit(spec.train_limit, "--train-limit")
    checks.check_limit(spec.prepare_limit, "--prepare-limit")
    checks.check_out_dir(spec.out)
    task, data = _data if _data is not None else load_task(spec)
    method_name, method_fn = resolve_method(spec.method)
    backend_name = spec.backend
    if backend_name == "auto":
        from bench.backends.auto import choose_backend

        backend_name, why = choose_backend(data.eval_sets)
        log(f"run: backend auto -> {backend_name} ({why})")
    backend_cls = BACKENDS.get(backend_name)  # unknown name: one line with close matches
    checks.check_backend_available(backend_name, backend_cls)  # before any model is prepared
    parse_options(backend_cls.__init__, spec.backend_options, backend_name, kind="backend", positional=2)
    alias = models.ALIASES.get(spec.model)
    prepare_overrides(spec.prepare_options)  # a bad --prepare-set fails before any model is built
    accepted = method_options(method_fn)
    overrides: dict[str, Any] = {}
    if alias is not None:
        overrides.update({k: v for k, v in alias.method_overrides if k in accepted})
    if "seed" in accepted:
        overrides["seed"] = spec.seed
    options = effective_options(
        method_fn, {**overrides, **parse_options(method_fn, dict(spec.options), method_name)}, method_name
    )
    path = None if alias is not None else models.resolve(spec.model)[0]
    if spec.reference is not None and not (Path(spec.reference).expanduser() / "results.json").exists():
        models.resolve(spec.reference)  # a reference model: checked now, evaluated later
    steps = data.all_steps()
    for key, note in (data.extras.get("data_notes") or {}).items():
        log(f"data: {key}: {note}")
    checks.check_task_data(data)  # every step: eval sets and forget split not empty
    # θ0 for methods that edit with task vectors: --original, or a prepared alias's base model
    original = models.resolve(spec.original, data, task.family)[0] if spec.original else None
    needs_original = getattr(method_fn, "needs_original", False)  # a bool, or a function of the options
    needs_original = needs_original(options) if callable(needs_original) else needs_original
    if original is None and needs_original and (alias is None or spec.as_is):
        raise BenchError(f"method '{method_name}' needs the original (pre-fine-tuning) model θ0: "
                         "give --original MODEL (a prepared alias uses its base model)")
    from bench.curves import plan_curves

    curves = plan_curves(spec, method_name, method_fn, task, data, steps)  # --eval-every / --eval-sets
    return RunPlan(spec, task, data, method_name, method_fn, options, backend_name, alias, path, steps, original,
                   bool(needs_original), curves)


def resolve_models(rp: RunPlan, log: Log) -> Models:
    """Stage 2: the target model (a base alias is prepared first: target = its fine-tuned
    "full" model) and the reference runs (retain-only, target)."""
    from bench import models

    spec = rp.spec
    prepared: Prepared | None = None
    if rp.alias is not None and not spec.as_is:
        prepared = prepare(spec, rp.task, rp.data, log, overlap=True)  # the target's evaluation may overlap unlearning
        target: Path | str = prepared.target_dir
    else:
        target = rp.model_path if rp.model_path is not None else models.resolve(
            spec.model, rp.data, rp.task.family)[0]
    refs: dict[str, Path] = {}
    retain = prepared.retain_run if prepared else _resolve_reference(spec, rp.task, rp.data, log)
    if retain is not None:
        refs["retain"] = retain
    if prepared is not None and prepared.target_run is not None:  # else added by Models.settle
        refs["target"] = prepared.target_run
    static = rp.task.reference_runs()
    refs.update(static)
    original = rp.original
    if original is None and prepared is not None and rp.needs_original:
        original = models.resolve(spec.model, rp.data, rp.task.family)[0]  # the alias's base model
    return Models(target, prepared, refs, tuple(static), original)


def unlearn_step(rp: RunPlan, k: int, start: Path | str, run_dir: Path, log: Log,
                 initial: Path | str | None = None,
                 original: Path | str | None = None, on_checkpoint: Any = None) -> tuple[Any, Path | None]:
    """Stage 3 (per step): the model after step ``k``'s unlearning, from model ``start``
    (``initial``: the target before any step, for methods whose reference is it;
    ``original``: θ0, the model before fine-tuning on the task, for task-vector methods;
    ``on_checkpoint``: the ``--eval-every`` hook, installed with the run's cadence).

    Returns ``(bundle, checkpoint dir or None)``. A checkpoint of a killed run is reused.
    """
    from bench import checks, models
    from bench.adapters import bind_options

    spec, step = rp.spec, rp.steps[k]
    ckpt = run_dir / ".partial" / f"step-{k}" / "model"
    if rp.method_name == "none":
        return models.load_bundle(start, prompt_style=spec.prompt_style, system_prompt=spec.system_prompt,
                                  name=spec.model), None
    if ckpt.exists():
        log(f"run: resuming from the unlearned checkpoint {ckpt}")
        return models.load_bundle(ckpt, name=spec.model), ckpt
    bundle = models.load_bundle(start, prompt_style=spec.prompt_style, system_prompt=spec.system_prompt,
                                name=spec.model)
    _seed_all(spec.seed + k)
    kwargs = bind_options(rp.method_fn, rp.options)  # shared option groups (TrainOptions) regrouped
    if "ctx" in inspect.signature(rp.method_fn).parameters:
        kwargs["ctx"] = MethodContext(
            spec.task, spec.seed, rp.data, list(rp.data.extras.get("refusals", [])),
            step=k, steps=len(rp.steps), step_reference=spec.step_reference,
            initial_model=str(initial) if initial is not None else None,
            original_model=str(original) if original is not None else None)
    where = f" (step {k + 1}/{len(rp.steps)}: {step.name})" if len(rp.steps) > 1 else ""
    log(f"run: unlearning with {rp.method_name} {rp.options}{where}")
    forget, retain = (checks.cap_split(s, spec.train_limit) for s in (step.forget, step.retain))
    hooks = contextlib.nullcontext()
    if on_checkpoint is not None and rp.curves is not None:
        from bench.training import training_hooks

        hooks = training_hooks(on_checkpoint, every=rp.curves.every, each_epoch=rp.curves.each_epoch)
    reference = contextlib.nullcontext()
    if spec.step_reference == "initial" and k > 0 and initial is not None:
        from bench.training import reference_model

        reference = reference_model(str(initial))  # every train() call's reference: the model before step 1
    with hooks, reference:
        bundle = checks.call_method(rp.method_fn, bundle, forget, retain, kwargs, rp.method_name,
                                    log_path=run_dir / "run.log")
    with atomic_dir(ckpt) as tmp:
        models.save_bundle(bundle, tmp)
    return bundle, ckpt


def answer_step(rp: RunPlan, bundle: Any, eval_sets: list[Any], log: Log) -> tuple[Any, list[Any], dict[str, Any]]:
    """Stage 4 (per step): every request of the eval sets answered; the backend is closed
    before returning (model-based scorers then have the memory)."""
    from bench.backends.cache import AnsweringLayer
    from bench.evaluate import answer, plan

    spec = rp.spec
    p = plan(bundle, eval_sets)
    counts = ", ".join(f"{n} {k}" for k, n in sorted(p.tokens_hint().items()))
    log(f"evaluate: {len(p.requests)} requests over {len(eval_sets)} sets ({counts})")
    backend = BACKENDS.get(rp.backend_name)(bundle, **spec.backend_options)
    layer = AnsweringLayer(backend, bundle.fingerprint(), cache_dir() / "requests" if spec.cache else None)
    info = {"backend_settings": backend.settings(), "engines": backend.engines()}
    t0 = time.time()
    try:
        responses = answer(p, layer)
    finally:
        layer.close()
    info["request_stats"] = layer.stats()
    info["answer_phases"] = layer.phases()
    info["request_sharing"] = p.sharing()
    log(f"evaluate: answered in {time.time() - t0:.1f} s ({_stats_line(info['request_stats'])})")
    return p, responses, info


def _stats_line(stats: dict[str, Any]) -> str:
    """``generate 80 requests -> 40 computed, ...`` from :meth:`AnsweringLayer.stats`."""
    return ", ".join(f"{kind} {c.get('requests', 0)} requests -> {c.get('computed', 0)} computed"
                     for kind, c in stats.items()) or "nothing to answer"


def score_step(rp: RunPlan, p: Any, responses: list[Any], references: dict[str, Any],
               timings: dict[str, Any] | None = None,
               ) -> tuple[dict[str, SetResult], list[dict[str, Any]], dict[str, Any], dict[str, str]]:
    """Stage 5 (per step): item metrics per set, then the task's derived nodes over this
    step's results and the reference roles given (``{role: graph.Results}``). ``timings``,
    when given, receives :func:`bench.evaluate.score`'s seconds and ``derived_s``."""
    from bench.evaluate import score
    from bench.graph import Results, aggregates

    sets, samples = score(p, responses, timings=timings)
    t0 = time.perf_counter()
    agg, notes = aggregates(list(rp.data.derived), {"self": Results(sets), **references})
    if timings is not None:
        timings["derived_s"] = round(time.perf_counter() - t0, 4)
    return sets, samples, agg, notes


def _step_references(models_: Models, k: int, prompt: dict[str, Any], eval_sets: list[Any],
                     previous: dict[str, Any] | None) -> dict[str, Any]:
    from bench.graph import Results

    out: dict[str, Any] = {}
    for role, run_dir in models_.settle().items():
        step = read_step(run_dir, k, prompt, eval_sets)
        if step is None and role in models_.static:
            step = read_step(run_dir, 0, prompt, eval_sets)
        if step is not None:
            out[role] = step
    if previous is not None:
        out["previous"] = previous
    return {r: v if isinstance(v, Results) else Results(*v) for r, v in out.items()}


def plan_attack_stage(rp: RunPlan) -> list[Any]:
    """Stage 1b: the ``--attack`` plugins built with their typed ``--attack-set`` options and
    checked against the last step's eval sets (:func:`bench.attacks.base.plan_attacks`;
    nothing is built). Options an attack takes and the user did not set default to the
    alias' method overrides (the tiny model's lr) and the run's seed. ``[]`` without attacks."""
    spec = rp.spec
    if not spec.attacks:
        if spec.attack_options:
            raise BenchError("--attack-set given without --attack NAME (see `bench list attacks`)")
        return []
    from bench.attacks.base import plan_attacks

    defaults: dict[str, Any] = dict(rp.alias.method_overrides) if rp.alias is not None else {}
    defaults["seed"] = spec.seed
    return plan_attacks(list(spec.attacks), dict(spec.attack_options), rp.data, rp.steps[-1].eval_sets, defaults)


def _final_model(rp: RunPlan, models_: Models, run_dir: Path) -> Any:
    """A fresh copy of the last step's model (the unlearned checkpoint, or the target for
    method ``none``)."""
    from bench import models

    spec = rp.spec
    ckpt = run_dir / ".partial" / f"step-{len(rp.steps) - 1}" / "model"
    if ckpt.exists():
        return models.load_bundle(ckpt, name=spec.model)
    if rp.method_name == "none":
        return models.load_bundle(models_.target, prompt_style=spec.prompt_style, name=spec.model)
    raise BenchError(f"attacks: the unlearned model of {run_dir} is gone (no {ckpt}); rerun with --overwrite")


def attack_step(rp: RunPlan, attacks: list[Any], models_: Models, run_dir: Path,
                rows: list[dict[str, Any]], prompt: dict[str, Any], log: Log) -> dict[str, Any]:
    """Stage 6b (after the last step): each attack on a fresh copy of the final model, then
    the attacked sets through the normal answer and score stages (cache keys differ: other
    weights or other prompts), compared with the unattacked numbers and the target run's
    (:func:`bench.attacks.base.compare`). Each attack's record is written to
    ``<run>/attacks/<name>.json`` (+ ``.samples.jsonl``) and reused on resume."""
    from bench.attacks.base import (
        UNDONE_THRESHOLD,
        AttackContext,
        affected_sets,
        baseline_values,
        compare,
        metric_keys,
        restrict,
        undone_median,
    )
    from bench.graph import Results

    spec, k = rp.spec, len(rp.steps) - 1
    step, row = rp.steps[k], rows[-1]
    previous = None
    if len(rows) > 1:
        previous = Results({n: SetResult.from_dict(d) for n, d in rows[-2]["sets"].items()}, rows[-2]["aggregates"])
    refs = _step_references(models_, k, prompt, step.eval_sets, previous)
    me = Results({n: SetResult.from_dict(d) for n, d in row["sets"].items()}, row["aggregates"])
    out: dict[str, Any] = {}
    for pa in attacks:
        done = run_dir / "attacks" / f"{pa.name}.json"
        if done.exists():
            rec = json.loads(done.read_text())
            if rec.get("options") == json.loads(json.dumps(pa.record())):
                log(f"attack {pa.name}: already finished")
                out[pa.name] = rec
                continue
        t0 = time.time()
        sets = affected_sets(step.eval_sets, pa.scope)
        ctx = AttackContext(rp.data, sets, spec.seed, k, log)
        bundle = _final_model(rp, models_, run_dir)
        base_fp = bundle.fingerprint()
        if base_fp != row["model_fingerprint"]:
            log(f"attack {pa.name}: warning: the reloaded model's fingerprint differs from the evaluated one")
        bundle = pa.attack.apply(bundle, ctx)
        attacked = [pa.attack.transform(es, ctx) for es in sets]
        attack_s = round(time.time() - t0, 3)
        t0 = time.time()
        fp = bundle.fingerprint()
        p, responses, info = answer_step(rp, bundle, attacked, log)
        del bundle
        answer_s = round(time.time() - t0, 3)
        t0 = time.time()
        cut = {role: restrict(r, attacked) for role, r in refs.items()}
        set_res, samples, agg, notes = score_step(rp, p, responses, cut)
        own = {f"{n}_{m}" for n, r in set_res.items() for m in r.aggregates}
        keys, forget_keys = metric_keys(attacked, agg, [x for x in agg if x not in own])
        # before and target over the same sets and items as after (an attack may hold items out)
        before = baseline_values(rp.data.derived, me, refs, attacked)
        target = None
        if "target" in refs:
            target = baseline_values(rp.data.derived, refs["target"],
                                     {r: v for r, v in refs.items() if r != "target"}, attacked)
        metrics = compare(before, agg, target, keys)
        mean = undone_median(metrics, forget_keys)
        rec = {
            "attack": pa.name, "kind": pa.attack.kind, "options": pa.record(), "step": step.name,
            "sets": [es.name for es in attacked], "items": {es.name: len(es.items) for es in attacked},
            "metrics": metrics, "forget_keys": forget_keys,
            "undone_median": mean, "undone_threshold": UNDONE_THRESHOLD,
            "undone": mean is not None and mean >= UNDONE_THRESHOLD, "target_known": target is not None,
            "model_fingerprint": fp, "base_fingerprint": base_fp,
            "info": pa.attack.info, "derived_notes": {x: v for x, v in notes.items() if x in row["aggregates"]},
            "request_stats": info.get("request_stats"),
            "timings": {"attack_s": attack_s, "answer_s": answer_s, "score_s": round(time.time() - t0, 3)},
        }
        for s in samples:
            s["step"], s["attack"] = step.name, pa.name
        atomic_write_text(run_dir / "attacks" / f"{pa.name}.samples.jsonl",
                          "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples))
        atomic_write_json(done, rec)
        shown = ", ".join(f"{x} {_num(m['before'])} -> {_num(m['after'])}" for x, m in metrics.items()
                          if x in forget_keys[:3])
        log(f"attack {pa.name}: {shown}; undone (median over forget metrics) {_num(mean)}")
        out[pa.name] = rec
    return out


def _num(v: Any) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def run(spec: RunSpec, log: Log = print, _data: tuple[Task, TaskData] | None = None) -> Path:
    """Execute ``spec``; returns the run directory (with results.json and samples.jsonl)."""
    t_start = time.time()
    rp = plan_run(spec, log, _data)                                     # 1. plan
    attacks = plan_attack_stage(rp)                                     # 1b. attacks (checked, not run)
    models_ = resolve_models(rp, log)                                   # 2. models
    try:
        out = _execute(rp, attacks, models_, t_start, log)
        models_.settle()  # the target's reference run is complete in the cache, even for a skipped run
        return out
    finally:
        models_.close()  # a failed run stops the worker still evaluating the target


def _execute(rp: RunPlan, attacks: list[Any], models_: Models, t_start: float, log: Log) -> Path:
    """Stages 3-7 of :func:`run` (unlearn, answer, score each step; attacks; results)."""
    from bench.graph import Results
    from bench.provenance import dir_fingerprint, spec_hash

    spec = rp.spec
    timings: dict[str, Any] = {"prepare_s": round(time.time() - t_start, 3)}
    target = models_.target

    resolved = {
        "task": spec.task, "task_options": rp.task.options(), "method": rp.method_name,
        "method_options": rp.options, "model": spec.model, "target": str(target),
        "target_fingerprint": dir_fingerprint(target), "backend": rp.backend_name,
        "backend_options": spec.backend_options, "seed": spec.seed, "limit": spec.limit,
        "data": rp.data.files, "prompt_style": spec.prompt_style,
        "reference_run": str(models_.references["retain"]) if "retain" in models_.references else None,
    }
    # what is measured is part of the run's identity: a changed metric or node reruns
    resolved["measures"] = spec_hash({"metrics": [_metric_config(st.eval_sets) for st in rp.steps],
                                      "derived": [n.describe() for n in rp.data.derived]})[:12]
    if models_.original is not None:  # recorded (and hashed into the run's name) only when there is one
        resolved["original"] = str(models_.original)
        resolved["original_fingerprint"] = (dir_fingerprint(models_.original)
                                            if Path(str(models_.original)).exists() else None)
    if len(rp.steps) > 1:
        resolved["step_reference"] = spec.step_reference
    if rp.data.extras.get("data_notes"):
        resolved["data_notes"] = dict(rp.data.extras["data_notes"])
    for role in models_.static:
        resolved[f"reference_{role}"] = str(models_.references[role])
    if attacks:
        resolved["attacks"] = {a.name: a.record() for a in attacks}
    if rp.curves is not None:  # recorded and hashed only when given (see bench.curves)
        resolved["eval_along_training"] = rp.curves.record()  # {"eval_every", "eval_sets"}
        from bench.curves import describe

        log(f"run: evaluating along training {describe(rp.curves)}")
    # recorded (and hashed) only when set, so that the default runs keep their directories
    resolved.update({k: v for k, v in (("system_prompt", spec.system_prompt),
                                       ("train_limit", spec.train_limit),
                                       ("prepare_limit", spec.prepare_limit),
                                       ("prepare_options", spec.prepare_options or None)) if v is not None})
    h = spec_hash(resolved)[:10]
    run_dir = Path(spec.out) / f"{_slug(spec.task)}__{_slug(rp.method_name)}__{_slug(spec.model)}__{h}"
    if (run_dir / "results.json").exists() and not spec.overwrite:
        log(f"run: already finished, skipped (use --overwrite to redo): {run_dir}")
        return run_dir
    if spec.overwrite:
        shutil.rmtree(run_dir / "steps", ignore_errors=True)
        shutil.rmtree(run_dir / "attacks", ignore_errors=True)
        shutil.rmtree(run_dir / "curves", ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "spec.json", {"spec": asdict(spec), "resolved": resolved})

    rows: list[dict[str, Any]] = []
    all_samples: list[dict[str, Any]] = []
    previous: Results | None = None
    start: Path | str = target
    info: dict[str, Any] = {}
    training: list[Any] = []
    prompt: dict[str, Any] | None = None
    for k, step in enumerate(rp.steps):
        done = run_dir / "steps" / f"{k}.json"
        if done.exists():
            row = json.loads(done.read_text())
            log(f"run: step {k + 1}/{len(rp.steps)} ({step.name}) already finished")
            all_samples.extend(row.pop("_samples", []))
            info = row.pop("_info", info)
            prompt = row.pop("_prompt", prompt)
            rows.append(row)
            previous = Results({n: SetResult.from_dict(d) for n, d in row["sets"].items()}, row["aggregates"])
            nxt = run_dir / ".partial" / f"step-{k}" / "model"
            start = nxt if nxt.exists() else start
            continue
        t0 = time.time()
        recorder = None
        if rp.curves is not None:  # --eval-every: the checkpoint hook of this step's training
            from bench.curves import CurveRecorder

            def refs_for(prompt: dict[str, Any], k: int = k, prev: Any = previous) -> dict[str, Any]:
                return _step_references(models_, k, prompt, [es for es in rp.steps[k].eval_sets
                                                             if es.name in rp.curves.sets], prev)

            recorder = CurveRecorder(rp, k, rp.curves, run_dir, refs_for, log)
        bundle, ckpt = unlearn_step(rp, k, start, run_dir, log, target, models_.original,  # 3. unlearn
                                    on_checkpoint=recorder)
        unlearn_s = round(time.time() - t0, 3)
        curve = recorder.finish(rp.method_name) if recorder is not None else None
        training = list(bundle.provenance.get("training", []))
        editing = list(bundle.provenance.get("editing", []))  # tv / wme: mean W, seconds per phase
        prompt = bundle.prompt.to_dict()
        fingerprint = bundle.fingerprint()
        t0 = time.time()
        p, responses, info = answer_step(rp, bundle, step.eval_sets, log)  # 4. answer
        del bundle
        answer_s = round(time.time() - t0, 3)
        t0 = time.time()
        refs = _step_references(models_, k, prompt, step.eval_sets, previous)
        score_t: dict[str, Any] = {}
        sets, samples, agg, notes = score_step(rp, p, responses, refs, score_t)  # 5. score
        log("score: " + ", ".join(f"{fam} {sec:.2f} s" for fam, sec in score_t["score_by_family_s"].items())
            + f"; derived nodes {score_t['derived_s']:.2f} s")
        for s in samples:
            s["step"] = step.name
        row = {
            "step": step.name, "index": k, "aggregates": agg, "derived_notes": notes,
            "sets": {n: v.to_dict() for n, v in sets.items()},
            "eval_sets": {es.name: es.describe() for es in step.eval_sets},
            "model_fingerprint": fingerprint, "training": training,
            "timings": {"unlearn_s": unlearn_s, "answer_s": answer_s, "score_s": round(time.time() - t0, 3),
                        "answer_by_phase_s": {ph: v["seconds"] for ph, v in info.get("answer_phases", {}).items()},
                        **score_t},
            "request_stats": info.get("request_stats"), "request_sharing": info.get("request_sharing"),
        }
        if curve is not None:
            row["curve"] = curve
        if editing:
            row["editing"] = editing
        atomic_write_json(done, {**row, "_samples": samples, "_info": info, "_prompt": prompt})  # 6. write step
        rows.append(row)
        all_samples.extend(samples)
        previous = Results(sets, agg)
        if k > 0:  # the previous step's model is no longer needed to resume
            shutil.rmtree(run_dir / ".partial" / f"step-{k - 1}", ignore_errors=True)
        if ckpt is not None:
            start = ckpt
    timings["unlearn_s"] = round(sum(r["timings"]["unlearn_s"] for r in rows), 3)
    timings["evaluate_s"] = round(sum(r["timings"]["answer_s"] + r["timings"]["score_s"] for r in rows), 3)
    timings.update(_family_timings(rows))
    attack_results: dict[str, Any] = {}
    if attacks:                                                          # 6b. attacks (last step)
        t0 = time.time()
        attack_results = attack_step(rp, attacks, models_, run_dir, rows, prompt or {}, log)
        timings["attacks_s"] = round(time.time() - t0, 3)
    timings["total_s"] = round(time.time() - t_start, 3)
    write_results(rp, run_dir, resolved, models_, rows, all_samples, info, prompt or {}, timings,
                  attack_results)
    last = run_dir / ".partial" / f"step-{len(rp.steps) - 1}" / "model"
    if spec.save_model and last.exists():
        shutil.rmtree(run_dir / "model", ignore_errors=True)
        last.rename(run_dir / "model")
    shutil.rmtree(run_dir / ".partial", ignore_errors=True)
    log(f"run: wrote {run_dir / 'results.json'}")
    return run_dir


def _family_timings(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Every step's answering seconds per phase (``answer_by_phase_s``) and scoring
    seconds per metric family / metric and of the derived nodes, summed over the steps."""
    out: dict[str, Any] = {}
    for name in ("answer_by_phase_s", "score_by_family_s", "score_by_metric_s"):
        acc: dict[str, float] = {}
        for r in rows:
            for k, v in (r.get("timings", {}).get(name) or {}).items():
                acc[k] = acc.get(k, 0.0) + float(v)
        out[name] = {k: round(v, 4) for k, v in acc.items()}
    out["derived_s"] = round(sum(float(r.get("timings", {}).get("derived_s") or 0.0) for r in rows), 4)
    scorers: dict[str, dict[str, float]] = {}
    for r in rows:
        for k, u in (r.get("timings", {}).get("scorers") or {}).items():
            acc_u = scorers.setdefault(k, {})
            for c, v in u.items():
                acc_u[c] = round(acc_u.get(c, 0) + v, 4)
    out["scorers"] = scorers
    return out


def write_results(rp: RunPlan, run_dir: Path, resolved: dict[str, Any], models_: Models,
                  rows: list[dict[str, Any]], samples: list[dict[str, Any]], info: dict[str, Any],
                  prompt: dict[str, Any], timings: dict[str, Any],
                  attacks: dict[str, Any] | None = None) -> None:
    """Stage 7: ``results.json`` (the last step's numbers at the top, one row per step under
    ``steps``) and ``samples.jsonl``, atomically."""
    from bench.provenance import versions

    spec, last = rp.spec, rows[-1]
    refs = models_.settle()
    results = {
        "run_dir": str(run_dir),
        "task": spec.task,
        "method": rp.method_name,
        "model": spec.model,
        "aggregates": last["aggregates"],
        "derived_notes": last["derived_notes"],
        "sets": last["sets"],
        "steps": [{k: v for k, v in r.items() if k not in ("sets", "curve")} for r in rows],
        "headline": list(rp.task.headline),
        "frontier": {"efficacy": rp.task.frontier[0], "utility": rp.task.frontier[1],
                     "efficacy_higher_is_better": rp.task.efficacy_higher_is_better},
        "config": {**resolved, "prompt": prompt, "cpu_threads": _cpu_threads(),
                   "backend_settings": info.get("backend_settings"), "engines": info.get("engines"),
                   "eval_sets": last.get("eval_sets"), "metrics": _metric_config(rp.steps[-1].eval_sets),
                   "derived": [n.describe() for n in rp.data.derived]},
        "model_identity": {"fingerprint": last["model_fingerprint"], "target": str(models_.target),
                           "target_fingerprint": resolved["target_fingerprint"]},
        "references": {
            "retain": str(refs["retain"]) if "retain" in refs else None,
            "target": str(refs["target"]) if "target" in refs else None,
            **{role: str(refs[role]) for role in models_.static},
        },
        "training": last.get("training", []),
        "request_stats": info.get("request_stats"),
        "answer_phases": info.get("answer_phases"),
        "request_sharing": info.get("request_sharing"),
        "versions": versions(),
        "seed": spec.seed,
        "timings": timings,
        "metric_directions": _directions(rp.steps[-1].eval_sets),
    }
    if len(rows) > 1:
        results["sets_per_step"] = [r["sets"] for r in rows]
    if attacks:
        results["attacks"] = attacks
    if any("curve" in r for r in rows):  # --eval-every: one curve per step (bench.curves)
        results["curves"] = [r["curve"] for r in rows if "curve" in r]
    atomic_write_text(run_dir / "samples.jsonl",
                      "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples))
    atomic_write_json(run_dir / "results.json", results)


def read_step(run_dir: Path, k: int, prompt: dict[str, Any] | None = None,
              eval_sets: list[Any] | None = None) -> Any:
    """Step ``k``'s results of reference run ``run_dir`` as :class:`bench.graph.Results`
    (``None`` when that run has fewer steps); BenchError when its prompt config or the
    format of a shared eval set differs (a reference must see exactly the same requests)."""
    from bench.graph import Results

    p = run_dir / "results.json"
    if not p.exists():
        raise BenchError(f"reference '{run_dir}' has no results.json")
    res = json.loads(p.read_text())
    ref_prompt = res.get("config", {}).get("prompt")
    if prompt is not None and ref_prompt is not None and ref_prompt != prompt:
        diff = sorted(k for k in prompt if prompt.get(k) != ref_prompt.get(k))
        raise BenchError(f"reference '{run_dir}' was evaluated with another prompt config "
                         f"(differs in: {', '.join(diff)}); rerun it with the same --prompt-style / --system-prompt")
    steps = res.get("steps") or [{"aggregates": res.get("aggregates", {})}]
    if k >= len(steps):
        return None
    sets = res["sets_per_step"][k] if "sets_per_step" in res else res["sets"]
    theirs = (steps[k].get("eval_sets") or res.get("config", {}).get("eval_sets") or {})
    for es in eval_sets or []:
        t = theirs.get(es.name)
        if t is None:
            continue
        mine = es.describe()
        diff = [f for f in ("format", "stop", "max_new_tokens") if t.get(f) != mine.get(f)]
        if diff:
            raise BenchError(f"reference '{run_dir}' evaluated set '{es.name}' with another "
                             f"{', '.join(diff)}; rerun it with this task's settings")
    return Results({name: SetResult.from_dict(d) for name, d in sets.items()}, steps[k].get("aggregates", {}))


def _read_sets(run_dir: Path, prompt: dict[str, Any] | None = None) -> dict[str, SetResult]:
    """The (last step's) per-set results of reference run ``run_dir`` (see :func:`read_step`)."""
    got = read_step(run_dir, 0, prompt)
    return dict(got.sets) if got is not None else {}


def _resolve_reference(spec: RunSpec, task: Task, data: TaskData, log: Log) -> Path | None:
    if spec.reference is None:
        return None
    ref = Path(spec.reference).expanduser()
    if (ref / "results.json").exists():
        return ref
    return reference_run(spec, spec.reference, task, data, log)  # a model: evaluate it as it is


def _cpu_threads() -> int | None:
    """torch's intra-op threads when training/evaluating on CPU: float sums are split
    differently with another count, so the last bits of results may depend on it (recorded
    in results; not part of the run's hash, so a sweep trial and the same ``bench run`` share
    a directory); ``None`` on CUDA."""
    import torch

    return None if torch.cuda.is_available() else torch.get_num_threads()


def _metric_config(eval_sets: list[Any]) -> dict[str, list[dict[str, Any]]]:
    return {es.name: [{"name": m.name, "key": m.result_key, "options": dict(m.options)} for m in es.metrics]
            for es in eval_sets}


def _directions(eval_sets: list[Any]) -> dict[str, str]:
    from bench.evaluate import build_metric

    out = {}
    for es in eval_sets:
        for m in es.metrics:
            hib = getattr(build_metric(m.name, dict(m.options)), "higher_is_better", None)
            out[f"{es.name}/{m.result_key}"] = {True: "higher = more knowledge",
                                                False: "lower = more knowledge", None: "see docs"}[hib]
    return out
