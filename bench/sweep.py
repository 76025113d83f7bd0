"""Sweeps: tasks × models × methods × option grids × seeds, each trial an ordinary run.

A sweep is written as a TOML or YAML file (or the same as ``bench sweep`` lists)::

    name = "demo"                        # optional; default: the file's stem
    tasks = ["synthetic-forget10"]       # or task = "..."
    methods = ["ga", "gd", "npo-gd"]     # or a table: [methods.npo-gd] beta = [0.1, 0.5]
    seeds = [0, 1]                       # or seed = 0
    model = "tiny"                       # or models = [...]
    backend = "hf"                       # and backend_options = {token_budget = 2048}
    limit = 20                           # any other RunSpec field: data_dir, prompt_style, ...
    out = "reports/sweeps/demo"          # default reports/sweeps/<name>
    [grid]                               # every method that takes the option
    epochs = [1, 2]
    [grid.npo-gd]                        # one method only (same as the methods table)
    beta = [0.1, 0.5]

Conventions
-----------
* A grid value is a scalar or a list; the trials are the Cartesian product, expanded in a
  fixed order (task, model, method, options sorted by name, seed). A key of the common
  ``grid`` goes to every method that accepts it (BenchError if none does); a method's own
  grid overrides a common key. Values are passed as ``--set`` strings (``1e-05``,
  ``true``), so a trial's run directory and hash are exactly those of the equivalent
  ``bench run`` command. Identical trials are run once.
* Every name, option and value is checked before anything is built (one-line BenchError
  naming the file and the key).
* Trial = :func:`bench.run.run` with a :class:`~bench.run.RunSpec`: a finished trial
  (``results.json`` in its run directory) is skipped, a killed one resumes from what its
  run kept. Runs write atomically (``results.json`` last), so the sweep never reads a
  half-written file as a result; a kill of the driver or of a trial, then the same
  command again, finishes the sweep without recomputing finished trials.
* Prepared models (a base alias fine-tuned on the task's full and retain splits, with
  their reference runs), and the reference run of a ``reference`` given as a model, are
  built once, before the trials that share them start: one
  prepare job per (task family, model, data) group (tasks of a family share the full
  model), its seeds in ascending order; the trials of a group wait for it (a Ray
  dependency) and then only reuse what it built.
* Execution: on Ray when ``ray`` is importable (``pip install .[ray]``): a local cluster by
  default, or ``address`` (``bench sweep --address HOST:PORT`` / ``auto``) for an
  existing one; one GPU per trial when the cluster has GPUs, else ``cpus_per_trial`` CPU
  threads per trial (``torch.set_num_threads``). Workers get ``BENCH_*``/``HF_*``
  environment variables and absolute paths, so ``$BENCH_CACHE`` and ``out`` must be on a
  file system every node sees. Without Ray the trials run one after another in this
  process, and the sweep says so.
* Output: ``<out>/runs/<run dirs>``, ``<out>/logs/<trial>.log`` (each trial's log),
  ``<out>/sweep.json`` (the trials with status, run directory, seconds; rewritten
  atomically after each trial) and ``<out>/report/`` (``bench report`` of the finished
  runs: report.md, frontier.png, report.html). One progress line per trial and a summary.
"""

from __future__ import annotations

import difflib
import itertools
import json
import os
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.paths import atomic_write_json

Log = Callable[[str], None]

# keys of a sweep file that are not RunSpec fields (or are plural forms of them)
_LIST_KEYS = {"tasks": "task", "methods": "method", "models": "model", "seeds": "seed"}
_SWEEP_ONLY = {"name", "grid", "cpus_per_trial"}
_NOT_IN_FILE = {"options", "overwrite", "out"}  # per-trial (grid), CLI-only, or handled apart
ENV_PREFIXES = ("BENCH_", "HF_", "TRANSFORMERS_", "TOKENIZERS_", "VLLM_", "OMP_")


@dataclass
class Sweep:
    """A parsed sweep: the lists to cross, the grids, and the RunSpec fields shared by all."""

    name: str
    tasks: list[str]
    methods: dict[str, dict[str, list[Any]]]  # method -> its own grid
    seeds: list[int]
    models: list[str]
    grid: dict[str, list[Any]] = field(default_factory=dict)  # common grid
    common: dict[str, Any] = field(default_factory=dict)  # other RunSpec fields
    out: str = ""
    cpus_per_trial: int = 1
    source: str = "command line"


@dataclass
class Trial:
    index: int
    label: str
    spec: Any  # bench.run.RunSpec
    group: str  # prepare group ("" when the trial needs no preparation)


# --------------------------------------------------------------------------- parsing

def _as_list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _runspec_fields() -> set[str]:
    from bench.run import RunSpec

    return {f.name for f in fields(RunSpec)}


def load_file(path: str | Path) -> dict[str, Any]:
    """The raw mapping of a TOML (``.toml``) or YAML (``.yaml``/``.yml``) sweep file."""
    p = Path(path)
    if not p.is_file():
        raise BenchError(f"sweep file '{path}' does not exist")
    suffix = p.suffix.lower()
    text = p.read_text(encoding="utf-8")
    if suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise BenchError(f"{p}: not valid TOML ({e})") from None
    elif suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ModuleNotFoundError:
            raise BenchError(f"{p}: reading YAML needs PyYAML (pip install pyyaml), or write TOML") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise BenchError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    else:
        raise BenchError(f"sweep file '{p}': expected .toml, .yaml or .yml")
    if not isinstance(data, dict):
        raise BenchError(f"{p}: a sweep file must be a mapping of keys (tasks, methods, seeds, ...)")
    return data


def parse(raw: Mapping[str, Any], source: str = "command line", name: str | None = None) -> Sweep:
    """A :class:`Sweep` from a mapping (a sweep file's content, or the CLI's lists)."""
    spec_fields = _runspec_fields()
    allowed = set(_LIST_KEYS) | set(_LIST_KEYS.values()) | _SWEEP_ONLY | {"out"} | (spec_fields - _NOT_IN_FILE)
    for key in raw:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise BenchError(f"{source}: unknown sweep key '{key}'{hint}")

    def pick(plural: str, default: Any = None) -> list[Any]:
        single = _LIST_KEYS[plural]
        if plural in raw and single in raw:
            raise BenchError(f"{source}: give '{plural}' or '{single}', not both")
        v = raw.get(plural, raw.get(single, default))
        if v is None:
            raise BenchError(f"{source}: '{plural}' is missing (e.g. {plural} = [...])")
        out = _as_list(v)
        if not out:
            raise BenchError(f"{source}: '{plural}' is empty")
        return out

    tasks = [str(t) for t in pick("tasks")]
    models = [str(m) for m in pick("models", "tiny")]
    seeds = []
    for s in pick("seeds", 0):
        if isinstance(s, bool) or not isinstance(s, int) and not (isinstance(s, str) and s.strip().lstrip("-").isdigit()):
            raise BenchError(f"{source}: seed {s!r} is not an integer")
        seeds.append(int(s))

    methods_raw = raw.get("methods", raw.get("method"))
    if methods_raw is None:
        raise BenchError(f"{source}: 'methods' is missing (e.g. methods = [\"ga\", \"gd\"])")
    methods: dict[str, dict[str, list[Any]]] = {}
    if isinstance(methods_raw, Mapping):
        for m, g in methods_raw.items():
            if g is None:
                g = {}
            if not isinstance(g, Mapping):
                raise BenchError(f"{source}: methods.{m} must be a table of option grids")
            methods[str(m)] = {str(k): _as_list(v) for k, v in g.items()}
    else:
        for m in _as_list(methods_raw):
            if not isinstance(m, str):
                raise BenchError(f"{source}: method {m!r} is not a name")
            methods.setdefault(m, {})
    if not methods:
        raise BenchError(f"{source}: 'methods' is empty")

    grid: dict[str, list[Any]] = {}
    grid_raw = raw.get("grid") or {}
    if not isinstance(grid_raw, Mapping):
        raise BenchError(f"{source}: 'grid' must be a table of option = value or [values]")
    for k, v in grid_raw.items():
        if isinstance(v, Mapping):  # [grid.<method>]
            if k not in methods:
                raise BenchError(f"{source}: grid.{k} names a method that is not in the sweep "
                                 f"(methods: {', '.join(methods)})")
            for kk, vv in v.items():
                methods[k].setdefault(str(kk), _as_list(vv))
        else:
            vals = _as_list(v)
            if not vals:
                raise BenchError(f"{source}: grid.{k} is empty")
            grid[str(k)] = vals
    for m, g in methods.items():
        for k, vals in g.items():
            if not vals:
                raise BenchError(f"{source}: grid of {m}: {k} is empty")

    common = {k: v for k, v in raw.items() if k in spec_fields and k not in _LIST_KEYS.values()}
    if "backend_options" in common and not isinstance(common["backend_options"], Mapping):
        raise BenchError(f"{source}: backend_options must be a table (e.g. {{token_budget = 2048}})")
    cpus = raw.get("cpus_per_trial", 1)
    if isinstance(cpus, bool) or not isinstance(cpus, int) or cpus < 1:
        raise BenchError(f"{source}: cpus_per_trial must be a positive integer, got {cpus!r}")
    nm = str(raw.get("name") or name or "sweep")
    out = str(raw.get("out") or Path("reports") / "sweeps" / nm)
    return Sweep(nm, tasks, methods, seeds, models, grid, common, out, cpus, source)


def option_string(v: Any) -> str:
    """A grid value as the ``--set`` string a user would type (``true``, ``1e-05``)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    return str(v)


# --------------------------------------------------------------------------- expansion

def expand(sweep: Sweep) -> list[Trial]:
    """The trials of ``sweep`` in their fixed order; every name and option value checked
    (BenchError naming the sweep's source) before anything is built."""
    from bench import models as models_mod
    from bench.adapters import method_options, parse_options, resolve_method
    from bench.registry import BACKENDS, TASKS
    from bench.run import RunSpec

    src = sweep.source
    for t in sweep.tasks:
        try:
            TASKS.get(t)
        except BenchError as e:
            raise BenchError(f"{src}: {e}") from None
    backend = sweep.common.get("backend", "hf")
    if backend != "auto":
        try:
            cls = BACKENDS.get(backend)
            parse_options(cls.__init__, dict(sweep.common.get("backend_options") or {}), backend,
                          kind="backend", positional=2)
        except BenchError as e:
            raise BenchError(f"{src}: {e}") from None
    fns = {}
    for m in sweep.methods:
        try:
            fns[m] = resolve_method(_abs_method(m))
        except BenchError as e:
            raise BenchError(f"{src}: {e}") from None
    for k in sweep.grid:
        if not any(k in method_options(fn) for _, fn in fns.values()):
            raise BenchError(f"{src}: grid option '{k}' is taken by none of the methods "
                             f"({', '.join(sweep.methods)})")

    common = {k: v for k, v in sweep.common.items()}
    for k in ("data_dir", "reference"):
        if common.get(k) and Path(str(common[k])).expanduser().exists():
            common[k] = str(Path(str(common[k])).expanduser().resolve())
    out_runs = str((Path(sweep.out) / "runs").resolve())
    trials: list[Trial] = []
    seen: set[str] = set()
    for task in sweep.tasks:
        for model in sweep.models:
            model_arg = model
            if model not in models_mod.ALIASES and Path(model).expanduser().exists():
                model_arg = str(Path(model).expanduser().resolve())
            for m, own in sweep.methods.items():
                name, fn = fns[m]
                accepted = method_options(fn)
                g = {k: v for k, v in sweep.grid.items() if k in accepted}
                g.update(own)
                keys = sorted(g)
                for combo in itertools.product(*(g[k] for k in keys)):
                    opts = {k: option_string(v) for k, v in zip(keys, combo)}
                    try:
                        parse_options(fn, opts, name)
                    except BenchError as e:
                        raise BenchError(f"{src}: {e}") from None
                    for seed in sweep.seeds:
                        spec = RunSpec(task=task, method=_abs_method(m), model=model_arg, seed=seed,
                                       options=opts, out=out_runs,
                                       **{k: v for k, v in common.items() if k != "out"})
                        key = json.dumps(asdict(spec), sort_keys=True, default=str)
                        if key in seen:
                            continue
                        seen.add(key)
                        label = " ".join([task, m, model] + [f"{k}={v}" for k, v in opts.items()]
                                         + [f"seed={seed}"])
                        group = ""
                        if model in models_mod.ALIASES and not spec.as_is:
                            # tasks of one family share prepared models (e.g. the full model):
                            # one group per family, so no two jobs build the same model at once
                            group = json.dumps([TASKS.get(task).family or task, model, spec.data_dir],
                                               default=str)
                        elif spec.reference and not Path(spec.reference, "results.json").exists():
                            # a reference *model*: evaluated once, before the trials that use it
                            group = json.dumps(["reference", task, spec.reference, spec.data_dir],
                                               default=str)
                        trials.append(Trial(len(trials), label, spec, group))
    return trials


def _abs_method(m: str) -> str:
    """A user adapter ``path/file.py:fn`` with an absolute path (workers may run elsewhere)."""
    if ":" in m and m.split(":", 1)[0].endswith(".py"):
        path, fn = m.rsplit(":", 1)
        p = Path(path).expanduser()
        if p.exists():
            return f"{p.resolve()}:{fn}"
    return m


# --------------------------------------------------------------------------- one trial

def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in text)[:120]


def _set_threads(cpus: int) -> None:
    try:
        import torch
    except ModuleNotFoundError:
        return
    if not torch.cuda.is_available():
        torch.set_num_threads(max(1, cpus))


def _file_log(path: Path) -> Log:
    path.parent.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {msg}\n")

    return log


def run_trial(spec_dict: dict[str, Any], log_path: str, cpus: int = 1,
              prepared: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run one trial (an ordinary :func:`bench.run.run`); never raises for a trial's own
    failure: returns ``{status: computed|skipped|failed, run_dir, seconds, error}``. A
    trial is ``skipped`` when its ``results.json`` predates the call (the run skipped it).
    ``prepared``: the result of the trial's prepare group (on Ray, the dependency that
    makes the trial wait for it); a failed one fails the trial without running it."""
    from bench.run import RunSpec, run

    if prepared is not None and prepared.get("status") == "failed":
        return {"status": "failed", "run_dir": None, "seconds": 0.0,
                "error": f"prepare failed: {prepared.get('error')}"}
    _set_threads(cpus)
    log = _file_log(Path(log_path))
    t0 = time.time()
    try:
        run_dir = run(RunSpec(**spec_dict), log=log)
    except Exception as e:  # a trial's failure is reported, the sweep goes on
        log(traceback.format_exc())
        msg = str(e) if isinstance(e, BenchError) else f"{type(e).__name__}: {e}"
        return {"status": "failed", "run_dir": None, "seconds": round(time.time() - t0, 2),
                "error": msg.splitlines()[0] if msg else type(e).__name__}
    mtime = (Path(run_dir) / "results.json").stat().st_mtime
    status = "skipped" if mtime < t0 else "computed"
    return {"status": status, "run_dir": str(run_dir), "seconds": round(time.time() - t0, 2), "error": None}


def prepare_group(spec_dicts: list[dict[str, Any]], log_path: str, cpus: int = 1) -> dict[str, Any]:
    """Build (or reuse) the prepared models and reference runs of one group's specs, in
    the given order (ascending seeds): :func:`bench.run.prepare` for a base alias, else the
    reference run of ``spec.reference`` (a model evaluated as it is)."""
    from bench import models
    from bench.run import RunSpec, _resolve_reference, load_task, prepare

    _set_threads(cpus)
    log = _file_log(Path(log_path))
    t0 = time.time()
    try:
        for d in spec_dicts:
            spec = RunSpec(**d)
            task, data = load_task(spec)
            if spec.model in models.ALIASES and not spec.as_is:
                prepare(spec, task, data, log=log)
            else:
                _resolve_reference(spec, task, data, log)
    except Exception as e:
        log(traceback.format_exc())
        return {"status": "failed", "seconds": round(time.time() - t0, 2), "error": f"{type(e).__name__}: {e}"}
    return {"status": "ok", "seconds": round(time.time() - t0, 2), "error": None}


def _prepare_groups(trials: Sequence[Trial]) -> dict[str, list[dict[str, Any]]]:
    """group → the distinct prepare specs (method none, options cleared), ascending seeds
    (the lowest seed builds a prepared model the others then reuse), then task names."""
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    for t in trials:
        if not t.group:
            continue
        d = asdict(replace(t.spec, method="none", options={}, overwrite=False, save_model=False))
        groups.setdefault(t.group, {})[json.dumps(d, sort_keys=True, default=str)] = d
    return {g: sorted(ds.values(), key=lambda d: (d["seed"], d["task"])) for g, ds in groups.items()}


# --------------------------------------------------------------------------- executors

def _worker_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True


class _Manifest:
    def __init__(self, sweep: Sweep, trials: Sequence[Trial], path: Path, executor: str):
        self.path = path
        self.doc = {
            "name": sweep.name, "source": sweep.source, "executor": executor,
            # torch threads per CPU trial: float results depend on it (README "Reproducibility")
            "cpus_per_trial": sweep.cpus_per_trial,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "trials": [{"index": t.index, "label": t.label, "spec": asdict(t.spec), "status": "pending",
                        "run_dir": None, "seconds": None, "error": None} for t in trials],
        }
        self.write()

    def update(self, index: int, result: Mapping[str, Any]) -> None:
        self.doc["trials"][index].update({k: result.get(k) for k in ("status", "run_dir", "seconds", "error")})
        self.write()

    def write(self) -> None:
        atomic_write_json(self.path, self.doc)


def execute(sweep: Sweep, *, use_ray: bool | None = None, address: str | None = None,
            log: Log = print, report: bool = True) -> dict[str, Any]:
    """Run every trial of ``sweep``; returns the manifest (also ``<out>/sweep.json``).

    ``use_ray``: None = Ray when installed; False = one after another in this process."""
    trials = expand(sweep)
    out = Path(sweep.out).resolve()
    logs = out / "logs"
    (out / "runs").mkdir(parents=True, exist_ok=True)
    if use_ray is None:
        use_ray = ray_available()
        if not use_ray:
            log("sweep: ray is not installed (pip install '.[ray]'): running the trials one after another")
    elif use_ray and not ray_available():
        raise BenchError("sweep: ray is not installed (pip install '.[ray]'); or run with --no-ray")
    groups = _prepare_groups(trials)
    executor = "ray" if use_ray else "sequential"
    manifest = _Manifest(sweep, trials, out / "sweep.json", executor)
    log(f"sweep {sweep.name}: {len(trials)} trials ({len(sweep.tasks)} task(s) × {len(sweep.models)} model(s) "
        f"× {len(sweep.methods)} method(s) × grids × {len(sweep.seeds)} seed(s)), "
        f"{len(groups)} prepare group(s), executor {executor}; out {out}")
    t0 = time.time()
    counts = {"computed": 0, "skipped": 0, "failed": 0}
    done = 0

    def progress(t: Trial, res: Mapping[str, Any]) -> None:
        nonlocal done
        done += 1
        counts[res["status"]] += 1
        manifest.update(t.index, res)
        tail = f"-> {res['run_dir']}" if res.get("run_dir") else f"error: {res.get('error')}"
        log(f"[{done}/{len(trials)}] {res['status']:<8} {t.label}  {res['seconds']:.1f} s  {tail}")

    glog = {g: str(logs / f"prepare-{i}.log") for i, g in enumerate(groups)}
    tlog = {t.index: str(logs / f"{t.index:03d}-{_slug(t.label)}.log") for t in trials}
    if use_ray:
        _execute_ray(sweep, trials, groups, glog, tlog, address, progress, log)
    else:
        threads = _get_threads()
        try:
            _execute_sequential(sweep, trials, groups, glog, tlog, progress, log)
        finally:
            if threads:  # trials set this process's torch threads; give it back
                _set_threads(threads)
    wall = time.time() - t0
    manifest.doc.update({"finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "wall_s": round(wall, 1),
                         "counts": counts})
    manifest.write()
    log(f"sweep {sweep.name}: {len(trials)} trials: {counts['computed']} computed, {counts['skipped']} "
        f"skipped (finished before), {counts['failed']} failed; {wall:.1f} s; manifest {out / 'sweep.json'}")
    finished = [t["run_dir"] for t in manifest.doc["trials"] if t["run_dir"]]
    if report and finished:
        from bench.report import write_report

        text, md, _ = write_report(finished, out / "report")
        log(text)
        log(f"report: {md.parent / 'report.html'}")
    return manifest.doc


def _get_threads() -> int:
    try:
        import torch
    except ModuleNotFoundError:
        return 0
    return torch.get_num_threads()


def _execute_sequential(sweep: Sweep, trials: Sequence[Trial], groups: Mapping[str, list[dict[str, Any]]],
                        glog: Mapping[str, str], tlog: Mapping[int, str],
                        progress: Callable[[Trial, Mapping[str, Any]], None], log: Log) -> None:
    failed_groups: dict[str, str] = {}
    for g, specs in groups.items():
        log(f"sweep: preparing {json.loads(g)[:3]} ({len(specs)} spec(s))")
        r = prepare_group(specs, glog[g], sweep.cpus_per_trial)
        if r["status"] != "ok":
            failed_groups[g] = r["error"]
    for t in trials:
        if t.group in failed_groups:
            progress(t, {"status": "failed", "run_dir": None, "seconds": 0.0,
                         "error": f"prepare failed: {failed_groups[t.group]}"})
            continue
        progress(t, run_trial(asdict(t.spec), tlog[t.index], sweep.cpus_per_trial))


def _execute_ray(sweep: Sweep, trials: Sequence[Trial], groups: Mapping[str, list[dict[str, Any]]],
                 glog: Mapping[str, str], tlog: Mapping[int, str], address: str | None,
                 progress: Callable[[Trial, Mapping[str, Any]], None], log: Log) -> None:
    import ray

    env = _worker_env()
    started_here = not ray.is_initialized()
    if started_here:
        kw: dict[str, Any] = {"runtime_env": {"env_vars": env}, "log_to_driver": False,
                              "include_dashboard": False, "logging_level": "ERROR"}
        try:
            if address:
                ray.init(address=address, **kw)
            else:
                # "local": always a new cluster of this machine, never one someone else started
                ray.init(address="local", num_cpus=os.cpu_count() or 1, **kw)
        except Exception as e:  # ray raises plain Exception/ConnectionError on start-up failures
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
            raise BenchError(f"sweep: could not start or reach {where} ({first}); "
                             "rerun (finished trials are kept), or run with --no-ray") from None
    try:
        res = ray.cluster_resources()
        gpus = 1 if res.get("GPU", 0) >= 1 else 0
        cpus = sweep.cpus_per_trial
        if gpus == 0 and cpus > res.get("CPU", 1):
            raise BenchError(f"sweep: cpus_per_trial={cpus} but the cluster has {res.get('CPU', 0):g} CPUs")
        log(f"sweep: ray cluster {res.get('CPU', 0):g} CPU, {res.get('GPU', 0):g} GPU; per trial: "
            + (f"1 GPU, {cpus} CPU" if gpus else f"{cpus} CPU thread(s)"))
        opts = {"num_cpus": cpus, "num_gpus": gpus}
        prep = ray.remote(prepare_group).options(**opts)
        trial = ray.remote(run_trial).options(**opts)
        prep_refs = {g: prep.remote(specs, glog[g], cpus) for g, specs in groups.items()}
        pending: dict[Any, Trial] = {}
        for t in trials:
            if t.group:
                ref = trial.remote(asdict(t.spec), tlog[t.index], cpus, prep_refs[t.group])
            else:
                ref = trial.remote(asdict(t.spec), tlog[t.index], cpus)
            pending[ref] = t
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                t = pending.pop(ref)
                try:
                    r = ray.get(ref)
                except Exception as e:  # worker died past its retries
                    r = {"status": "failed", "run_dir": None, "seconds": 0.0,
                         "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
                progress(t, r)
    finally:
        if started_here:
            ray.shutdown()
