#!/usr/bin/env python
"""Methods benchmark: wall time of ``wme-fisher`` against ``npo-gd`` and peak memory of
``npo-lora`` against ``npo-kl``, on the same task, model and training data.

    python benchmarks/methods_speed.py                                  # synthetic-forget10, tiny
    python benchmarks/methods_speed.py --task tofu-forget01 --data-dir ../shared/data/tofu \\
        --model smollm2-135m --as-is --set max_steps=4 --set sample_fraction=0.05 --threads 2
    python benchmarks/methods_speed.py ... --set wme-fisher:max_steps=4 --set npo-gd:max_steps=2

Each method runs in its own subprocess (so that peak memory is that method's alone) on the
same target model: the task's prepared target for a base alias (``bench prepare``, cached),
or ``--model`` itself with ``--as-is``; θ0 for ``wme-fisher`` is the alias's base model, or
``--original`` (default: the target itself with ``--as-is`` — the timing does not depend on
which θ0 it is). Each runs with its own paper defaults plus the alias's overrides (tiny:
lr 1e-3) plus every ``--set`` that the method accepts (others are ignored for it).

Figures: ``wall_s`` = the method call (reference log-probs, gradients, fine-tuning, the
edit: everything but loading the target), ``time.perf_counter``; memory = peak resident set
size of the worker (``ru_maxrss``, MiB) and that minus the RSS just after loading the
target (``extra_rss_mib``: what the method adds), and on CUDA
``torch.cuda.max_memory_allocated``. On a shared CPU timings are disturbed: compare the
ratios of one invocation. Output: a table and, with ``--json``, the raw figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Container
from pathlib import Path

PAIRS = (("wme-fisher", "npo-gd", "wall_s"), ("npo-lora", "npo-kl", "extra_rss_mib"))


def _rss_mib() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def method_sets(sets: list[str], method: str, accepted: Container[str]) -> dict[str, str]:
    """The ``--set`` values for ``method``: ``KEY=VALUE`` for every method that accepts
    ``KEY``, ``METHOD:KEY=VALUE`` for that method only (it wins over a plain ``KEY``)."""
    plain: dict[str, str] = {}
    own: dict[str, str] = {}
    for s in sets:
        if "=" not in s:
            raise SystemExit(f"--set {s!r}: expected KEY=VALUE or METHOD:KEY=VALUE")
        key, value = s.split("=", 1)
        target, _, key = key.rpartition(":")
        if key in accepted and target in ("", method):
            (own if target else plain)[key] = value
    return {**plain, **own}


def worker(args: argparse.Namespace) -> dict:
    import resource

    import torch

    from bench import models
    from bench.adapters import (
        bind_options,
        effective_options,
        method_options,
        parse_options,
        resolve_method,
    )
    from bench.run import MethodContext, RunSpec, load_task, prepare

    if args.threads:
        torch.set_num_threads(args.threads)
    spec = RunSpec(task=args.task, model=args.model, data_dir=args.data_dir, limit=args.limit,
                   out=str(Path(os.environ.get("BENCH_CACHE", "/tmp")) / "runs"), as_is=args.as_is)
    task, data = load_task(spec)
    alias = models.ALIASES.get(args.model)
    if alias is not None and not args.as_is:
        target = prepare(spec, task, data, log=lambda s: None).target_dir
        original = models.resolve(args.model, data, task.family)[0]
    else:
        target = models.resolve(args.model, data, task.family)[0]
        original = models.resolve(args.original, data, task.family)[0] if args.original else target
    name, fn = resolve_method(args.worker)
    accepted = method_options(fn)
    raw = method_sets(args.set, name, accepted)
    overrides = {k: v for k, v in (alias.method_overrides if alias else ()) if k in accepted}
    options = effective_options(fn, {**overrides, **parse_options(fn, raw, name)}, name)
    bundle = models.load_bundle(target, name=args.model)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    rss0 = _rss_mib()
    kwargs = bind_options(fn, options)
    if "ctx" in __import__("inspect").signature(fn).parameters:
        kwargs["ctx"] = MethodContext(args.task, 0, data, list(data.extras.get("refusals", [])), str(original))
    t0 = time.perf_counter()
    fn(bundle, data.forget, data.retain, **kwargs)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"method": name, "wall_s": round(wall, 3), "peak_rss_mib": round(peak, 1),
           "rss_after_load_mib": round(rss0, 1), "extra_rss_mib": round(peak - rss0, 1),
           "cuda_peak_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if torch.cuda.is_available() else None,
           "forget": len(data.forget), "retain": len(data.retain),
           "steps": [t["steps"] for t in bundle.provenance.get("training", [])],
           "train_s": [round(t["seconds"], 3) for t in bundle.provenance.get("training", []) if "seconds" in t],
           "phases_s": (bundle.provenance.get("editing") or [{}])[-1].get("seconds"),
           "options": {k: v for k, v in options.items() if k in raw or k in overrides}}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="synthetic-forget10")
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--data-dir")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--as-is", action="store_true", help="use --model itself as the target (no bench prepare)")
    ap.add_argument("--original", help="θ0 for wme-fisher with --as-is (default: the target itself)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="method option for every method that accepts it, e.g. max_steps=4; "
                         "METHOD:KEY=VALUE for one method only, e.g. npo-gd:max_steps=2")
    ap.add_argument("--threads", type=int, default=0, help="torch threads per worker (0: torch's default)")
    ap.add_argument("--methods", default="wme-fisher,npo-gd,npo-lora,npo-kl")
    ap.add_argument("--json", help="write the raw figures here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(args)))
        return 0
    rows = {}
    base = [a for a in (argv if argv is not None else sys.argv[1:])]
    for m in args.methods.split(","):
        cmd = [sys.executable, __file__, *base, "--worker", m]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode or not line:
            print(f"{m}: failed (exit {proc.returncode})\n{proc.stderr[-2000:]}", file=sys.stderr)
            return 1
        rows[m] = json.loads(line[-1][7:])
        rows[m]["process_s"] = round(time.perf_counter() - t0, 1)
    print(f"task {args.task}  model {args.model}  sets {' '.join(args.set) or '(defaults)'}")
    print(f"{'method':<12} {'wall s':>9} {'peak RSS MiB':>13} {'extra MiB':>10} {'CUDA MiB':>9}  steps")
    for m, r in rows.items():
        cuda = "-" if r["cuda_peak_mib"] is None else f"{r['cuda_peak_mib']:.0f}"
        print(f"{m:<12} {r['wall_s']:>9.2f} {r['peak_rss_mib']:>13.1f} {r['extra_rss_mib']:>10.1f} {cuda:>9}  {r['steps']}"
              f"  train s {r['train_s']}" + (f"  phases s {r['phases_s']}" if r.get("phases_s") else ""))
    ratios = {}
    for a, b, key in PAIRS:
        if a in rows and b in rows and rows[b][key]:
            ratios[f"{a}/{b} {key}"] = round(rows[a][key] / rows[b][key], 3)
        if key == "extra_rss_mib" and a in rows and b in rows and rows[a]["cuda_peak_mib"]:
            ratios[f"{a}/{b} cuda_peak_mib"] = round(rows[a]["cuda_peak_mib"] / rows[b]["cuda_peak_mib"], 3)
    for k, v in ratios.items():
        print(f"ratio {k}: {v}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows, "ratios": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
