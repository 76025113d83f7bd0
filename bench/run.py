"""Run orchestration: spec → (prepared models) → unlearn → evaluate → results files.

One direction of flow (see DESIGN.md). A run directory's name is derived from the
run's spec hash; its outputs are written atomically, and a run is resumable:

* prepared models (target and retain-only) and reference runs are cached by content
  (``$BENCH_CACHE``) and reused, never silently recomputed;
* the unlearned model is checkpointed to ``<run>/.partial/model`` before evaluation, so a
  run killed during evaluation does not unlearn again;
* answers are stored in the request cache as they are computed, so a rerun reads the
  finished ones instead of recomputing them;
* a finished run (``results.json`` present) is skipped unless ``overwrite``.
"""

from __future__ import annotations

import inspect
import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.items import Item, TaskData
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
    out: str = "reports/runs"
    as_is: bool = False  # use --model as the target even when it is a base alias
    reference: str | None = None  # retain-only reference: a run dir or a model
    prompt_style: str = "auto"
    system_prompt: str | None = None  # chat styles: the system turn (bench.prompts)
    train_limit: int | None = None  # the method sees the first N forget / retain items only
    cache: bool = True
    overwrite: bool = False
    save_model: bool = False


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


@dataclass
class Prepared:
    target_dir: Path
    retain_dir: Path
    target_run: Path
    retain_run: Path


def _seed_all(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _items_hash(items: list[Item]) -> str:
    from bench.provenance import spec_hash

    return spec_hash([(it.question, it.answer) for it in items])[:12]


def _slug(text: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "-" for c in text)
    return keep.strip("-")[-40:] or "model"


def load_task(spec: RunSpec) -> tuple[Task, TaskData]:
    task = TASKS.get(spec.task)()
    data_dir = Path(spec.data_dir).expanduser() if spec.data_dir else None
    if data_dir is not None and not data_dir.exists():
        raise BenchError(f"data directory '{spec.data_dir}' does not exist")
    return task, task.load(data_dir, spec.limit)


# --------------------------------------------------------------------------- prepare

def finetune_settings(alias: Any) -> dict[str, Any]:
    base = {"epochs": 5, "lr": 1e-5, "batch_size": 16}  # TOFU fine-tuning scale (locuslab/tofu)
    if alias is not None:
        base.update(dict(alias.finetune))
    return base


def prepare(spec: RunSpec, task: Task, data: TaskData, log: Log = print) -> Prepared:
    """Build (or reuse) the target and retain-only models of ``task`` from base ``spec.model``,
    and their reference evaluations (ordinary ``method none`` runs, cached)."""
    from bench import checks, models
    from bench.provenance import dir_fingerprint

    checks.check_backend_available(spec.backend)  # the reference runs need it: fail before training
    base_path, alias = models.resolve(spec.model, data, task.family)
    ft = finetune_settings(alias)
    base_fp = dir_fingerprint(base_path)[:10]
    root = cache_dir() / "prepared" / task.family / f"{_slug(spec.model)}-{base_fp}"
    prompt_key = {k: v for k, v in (("prompt_style", spec.prompt_style), ("system_prompt", spec.system_prompt))
                  if v not in (None, "auto")}  # empty for the defaults: cache keys unchanged
    ft_key = json.dumps({**ft, **prompt_key}, sort_keys=True)

    def build(split: str, items: list[Item]) -> Path:
        from bench.provenance import spec_hash

        key = f"{split}-{_items_hash(items)}-{spec_hash(ft_key)[:8]}"
        target = root / key
        if target.exists():
            log(f"prepare: reusing {split} model {target}")
            return target

        def _build(tmp: Path) -> None:
            from bench.training import finetune

            t0 = time.time()
            bundle = models.load_bundle(base_path, prompt_style=spec.prompt_style,
                                        system_prompt=spec.system_prompt, name=spec.model)
            _seed_all(spec.seed)
            finetune(bundle, items, seed=spec.seed, desc=f"prepare {split} ({len(items)} QA)", **ft)
            models.save_bundle(bundle, tmp)
            atomic_write_json(tmp / "bench_prepared.json", {
                "base": spec.model, "base_fingerprint": base_fp, "split": split,
                "task_family": task.family, "items": len(items), "finetune": ft,
                "seconds": round(time.time() - t0, 2),
            })

        log(f"prepare: fine-tuning the {split} model on {len(items)} items")
        return cached_dir(target, _build)

    replay = models.general_knowledge(data) if alias is not None and alias.replay_general_knowledge else []
    target_dir = build("full", data.full + replay)
    retain_dir = build(task.reference_key or "retain", data.retain + replay)
    ref_common = dict(task=spec.task, data_dir=spec.data_dir, backend=spec.backend,
                      backend_options=spec.backend_options, seed=spec.seed, limit=spec.limit,
                      out=str(cache_dir() / "runs"), as_is=True, cache=spec.cache,
                      prompt_style=spec.prompt_style, system_prompt=spec.system_prompt)
    retain_run = run(RunSpec(method="none", model=str(retain_dir), **ref_common), log=log, _data=(task, data))
    target_run = run(RunSpec(method="none", model=str(target_dir), reference=str(retain_run), **ref_common),
                     log=log, _data=(task, data))
    return Prepared(target_dir, retain_dir, target_run, retain_run)


# --------------------------------------------------------------------------- run

def _read_sets(run_dir: Path, prompt: dict[str, Any] | None = None) -> dict[str, SetResult]:
    """The per-set results of reference run ``run_dir``; BenchError when its prompt config
    differs from ``prompt`` (a reference must see exactly the same prompts)."""
    p = run_dir / "results.json"
    if not p.exists():
        raise BenchError(f"reference '{run_dir}' has no results.json")
    res = json.loads(p.read_text())
    ref_prompt = res.get("config", {}).get("prompt")
    if prompt is not None and ref_prompt is not None and ref_prompt != prompt:
        diff = sorted(k for k in prompt if prompt.get(k) != ref_prompt.get(k))
        raise BenchError(f"reference '{run_dir}' was evaluated with another prompt config "
                         f"(differs in: {', '.join(diff)}); rerun it with the same --prompt-style / --system-prompt")
    return {name: SetResult.from_dict(d) for name, d in res["sets"].items()}


def _resolve_reference(spec: RunSpec, task: Task, data: TaskData, log: Log) -> Path | None:
    if spec.reference is None:
        return None
    ref = Path(spec.reference).expanduser()
    if (ref / "results.json").exists():
        return ref
    # a model: evaluate it as it is (a cached reference run)
    return run(RunSpec(task=spec.task, method="none", model=spec.reference, data_dir=spec.data_dir,
                       backend=spec.backend, backend_options=spec.backend_options, seed=spec.seed,
                       limit=spec.limit, out=str(cache_dir() / "runs"), as_is=True, cache=spec.cache,
                       prompt_style=spec.prompt_style, system_prompt=spec.system_prompt),
               log=log, _data=(task, data))


def run(spec: RunSpec, log: Log = print, _data: tuple[Task, TaskData] | None = None) -> Path:
    """Execute ``spec``; returns the run directory (with results.json and samples.jsonl)."""
    from bench import checks, models
    from bench.adapters import effective_options, method_options, parse_options, resolve_method
    from bench.provenance import dir_fingerprint, spec_hash, versions

    t_start = time.time()
    timings: dict[str, float] = {}
    # validate everything cheap before any expensive step (building/preparing models)
    checks.check_seed(spec.seed)
    checks.check_limit(spec.train_limit, "--train-limit")
    checks.check_out_dir(spec.out)
    task, data = _data if _data is not None else load_task(spec)
    checks.check_task_data(data)
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

    # model: a base alias is prepared first (target = its fine-tuned "full" model)
    prepared: Prepared | None = None
    if alias is not None and not spec.as_is:
        prepared = prepare(spec, task, data, log)
        target = prepared.target_dir
    else:
        target = path if path is not None else models.resolve(spec.model, data, task.family)[0]
    timings["prepare_s"] = round(time.time() - t_start, 3)

    reference_run = prepared.retain_run if prepared else _resolve_reference(spec, task, data, log)

    resolved = {
        "task": spec.task, "method": method_name, "method_options": options,
        "model": spec.model, "target": str(target), "target_fingerprint": dir_fingerprint(target),
        "backend": backend_name, "backend_options": spec.backend_options, "seed": spec.seed,
        "limit": spec.limit, "data": data.files, "prompt_style": spec.prompt_style,
        "reference_run": str(reference_run) if reference_run else None,
    }
    # recorded (and hashed) only when set, so that the default runs keep their directories
    resolved.update({k: v for k, v in (("system_prompt", spec.system_prompt),
                                       ("train_limit", spec.train_limit)) if v is not None})
    h = spec_hash(resolved)[:10]
    run_dir = Path(spec.out) / f"{_slug(spec.task)}__{_slug(method_name)}__{_slug(spec.model)}__{h}"
    if (run_dir / "results.json").exists() and not spec.overwrite:
        log(f"run: already finished, skipped (use --overwrite to redo): {run_dir}")
        return run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "spec.json", {"spec": asdict(spec), "resolved": resolved})

    # unlearn (or resume from the checkpoint of a killed run)
    t0 = time.time()
    ckpt = run_dir / ".partial" / "model"
    if method_name == "none":
        bundle = models.load_bundle(target, prompt_style=spec.prompt_style,
                                    system_prompt=spec.system_prompt, name=spec.model)
    elif ckpt.exists():
        log(f"run: resuming from the unlearned checkpoint {ckpt}")
        bundle = models.load_bundle(ckpt, name=spec.model)
    else:
        bundle = models.load_bundle(target, prompt_style=spec.prompt_style,
                                    system_prompt=spec.system_prompt, name=spec.model)
        _seed_all(spec.seed)
        kwargs = dict(options)
        if "ctx" in inspect.signature(method_fn).parameters:
            kwargs["ctx"] = MethodContext(spec.task, spec.seed, data, list(data.extras.get("refusals", [])))
        log(f"run: unlearning with {method_name} {options}")
        forget, retain = (checks.cap_split(s, spec.train_limit) for s in (data.forget, data.retain))
        bundle = checks.call_method(method_fn, bundle, forget, retain, kwargs, method_name,
                                    log_path=run_dir / "run.log")
        with atomic_dir(ckpt) as tmp:
            models.save_bundle(bundle, tmp)
    timings["unlearn_s"] = round(time.time() - t0, 3)

    # evaluate
    t0 = time.time()
    from bench.backends.cache import AnsweringLayer
    from bench.evaluate import evaluate

    backend = BACKENDS.get(backend_name)(bundle, **spec.backend_options)
    fingerprint = bundle.fingerprint()
    layer = AnsweringLayer(backend, fingerprint, cache_dir() / "requests" if spec.cache else None)
    backend_settings, engines = backend.settings(), backend.engines()
    try:
        sets, samples = evaluate(bundle, data.eval_sets, layer)
    finally:
        layer.close()
    timings["evaluate_s"] = round(time.time() - t0, 3)

    reference_sets = _read_sets(reference_run, bundle.prompt.to_dict()) if reference_run else None
    aggregates = task.aggregates(sets, reference_sets)
    timings["total_s"] = round(time.time() - t_start, 3)

    results = {
        "run_dir": str(run_dir),
        "task": spec.task,
        "method": method_name,
        "model": spec.model,
        "aggregates": aggregates,
        "sets": {k: v.to_dict() for k, v in sets.items()},
        "config": {**resolved, "prompt": bundle.prompt.to_dict(),
                   "backend_settings": backend_settings, "engines": engines},
        "model_identity": {"fingerprint": fingerprint, "target": str(target),
                           "target_fingerprint": resolved["target_fingerprint"]},
        "references": {
            "retain": str(reference_run) if reference_run else None,
            "target": str(prepared.target_run) if prepared else None,
        },
        "request_stats": layer.stats(),
        "versions": versions(),
        "seed": spec.seed,
        "timings": timings,
        "metric_directions": _directions(data),
    }
    atomic_write_text(run_dir / "samples.jsonl",
                      "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples))
    atomic_write_json(run_dir / "results.json", results)
    if spec.save_model and ckpt.exists():
        shutil.rmtree(run_dir / "model", ignore_errors=True)
        ckpt.rename(run_dir / "model")
    shutil.rmtree(run_dir / ".partial", ignore_errors=True)
    log(f"run: wrote {run_dir / 'results.json'}")
    return run_dir


def _directions(data: TaskData) -> dict[str, str]:
    from bench.evaluate import build_metric

    out = {}
    for es in data.eval_sets:
        for m in es.metrics:
            hib = getattr(build_metric(m.name, dict(m.options)), "higher_is_better", None)
            out[f"{es.name}/{m.result_key}"] = {True: "higher = more knowledge",
                                                False: "lower = more knowledge", None: "see docs"}[hib]
    return out
