#!/usr/bin/env python
"""The newcomer's first minute: wall time of each phase of the embedded default.

    python benchmarks/first_run.py                # cold cache, then warm cache
    python benchmarks/first_run.py --json first_run.json --task synthetic-forget10

Runs the README's first command, ``bench run --task synthetic-forget10 --method npo-gd
--model tiny``, as a fresh process twice: once with an empty ``$BENCH_CACHE`` (cold: the
tiny model is built and pretrained, the target and retain-only models are fine-tuned and
evaluated) and once more with that cache kept and a new ``--out`` (warm: everything
prepared is reused; unlearning and evaluation are done again). Each run's phases:

* ``start-up`` — process start to the ``tiny: built`` line, else to its first output line
  (imports, task generation, the tiny model's tokenizer and weights);
* ``tiny build + pretrain`` — the ``tiny: built`` line to the first ``prepare:`` line;
* ``prepare (both models)`` — wall time from the first ``prepare:`` line to the end of
  prepare: prepare's line that the worker evaluates the target meanwhile, or (without
  that overlap) the start of the target's reference evaluation (the last ``evaluate:`` line
  before prepare's ``forget ROUGE-L`` line): both models' fine-tuning and the retain-only
  model's evaluation. Side by side (one core each, see ``bench.run.parallel_prepare_ok``)
  the target trains in a worker while this process trains and then evaluates the
  retain-only model;
* ``prepare target`` / ``prepare retain-only`` / ``evaluate retain-only`` — each model's own
  fine-tuning + saving, from its ``bench_prepared.json`` (``seconds``), and the retain-only
  reference run's ``timings.total_s``: detail, inside the span above, not part of the sum;
* ``evaluate target`` — the target's reference run's ``timings.total_s`` (model loading +
  evaluation), from its ``results.json``; when the worker evaluated it while this process
  unlearned, it is the detail row ``evaluate target (worker)`` instead, not part of the sum;
* ``unlearn`` / ``evaluate`` — the run's ``timings.unlearn_s`` / ``evaluate_s``;
* ``other`` — the rest of the total (aggregates, report and plot, writing files);
* ``total`` — wall time of the whole process (``time.perf_counter`` around it).

Phases that a warm run skips read 0; a warm run's ``unlearn`` includes that process's first
import of torch and transformers (5 to 8 s), which a cold run pays in its first phases.
All figures are wall-clock seconds on the machine it runs on; the torch threads are the
library's defaults.

``--isa avx2`` runs both on AVX2 code paths only (:data:`AVX2_ENV`: torch's kernels, MKL and
oneDNN told not to use AVX-512 or AMX), an estimate of an AVX2-only CPU on a newer one:
the same instructions, not the same chip (clock and caches stay this machine's).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PHASES = ("start-up", "tiny build + pretrain", "prepare (both models)", "evaluate target", "unlearn",
          "evaluate", "other", "total")
DETAIL = ("prepare target", "prepare retain-only", "evaluate retain-only",  # inside "prepare (both models)"
          "evaluate target (worker)")  # beside "unlearn", when the prepare worker evaluated the target
ROWS = PHASES[:3] + DETAIL[:3] + ("evaluate target", "unlearn", "evaluate target (worker)", "evaluate", "other",
                                   "total")  # printed in this order: each detail row under its span
OVERLAP_LINE = "reference run is evaluated in the worker"  # bench.run._prepare's line
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def run_once(cmd: list[str], env: dict[str, str]) -> tuple[float, list[tuple[float, str]], int]:
    """Run ``cmd``; (wall seconds, [(seconds since start, line)], exit status)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, bufsize=1)
    lines: list[tuple[float, str]] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append((time.perf_counter() - t0, line.rstrip("\n")))
    rc = proc.wait()
    return time.perf_counter() - t0, lines, rc


def _first(lines: list[tuple[float, str]], prefix: str) -> float | None:
    return next((t for t, ln in lines if ln.startswith(prefix)), None)


def phases(total: float, lines: list[tuple[float, str]], out: Path, started: float) -> dict[str, float]:
    """The phase figures of one run (see the module docstring); ``started``: its
    ``time.time()`` at start (files older than that were reused, not made by it)."""
    ph = dict.fromkeys(PHASES + DETAIL, 0.0)
    ph["total"] = total
    built, prep = _first(lines, "tiny: built"), _first(lines, "prepare:")
    ph["start-up"] = built if built is not None else lines[0][0] if lines else total
    if built is not None and prep is not None:
        ph["tiny build + pretrain"] = prep - built
    (run_dir,) = [d for d in out.iterdir() if d.is_dir()]
    res = json.loads((run_dir / "results.json").read_text())
    for key, name in (("unlearn_s", "unlearn"), ("evaluate_s", "evaluate")):
        ph[name] = float(res["timings"].get(key, 0.0))
    prepared_dir = Path(res["config"]["target"])
    for label, ref in (("target", res["references"].get("target")),
                       ("retain-only", res["references"].get("retain"))):
        if ref:
            ref_res = json.loads((Path(ref) / "results.json").read_text())
            if (Path(ref) / "results.json").stat().st_mtime >= started:  # made by this run
                ph[f"evaluate {label}"] = float(ref_res["timings"]["total_s"])
    for label, d in (("target", prepared_dir), ("retain-only", _retain_dir(res))):
        meta = d / "bench_prepared.json" if d else None
        if meta and meta.exists() and meta.stat().st_mtime >= started:
            ph[f"prepare {label}"] = float(json.loads(meta.read_text())["seconds"])
    memorised = _first(lines, "prepare: forget ROUGE-L")
    after = max((t for t, ln in lines if prep is not None and memorised is not None and prep < t < memorised
                 and ln.startswith("evaluate:") and "requests over" in ln), default=None)
    overlapped = next((t for t, ln in lines if ln.startswith("prepare:") and OVERLAP_LINE in ln), None)
    if overlapped is not None:
        after = overlapped
        ph["evaluate target (worker)"], ph["evaluate target"] = ph["evaluate target"], 0.0
    if prep is not None and after is not None and (ph["prepare target"] or ph["prepare retain-only"]):
        ph["prepare (both models)"] = after - prep
    ph["other"] = max(0.0, total - sum(v for k, v in ph.items() if k not in ("other", "total") + DETAIL))
    return ph


def _retain_dir(res: dict[str, Any]) -> Path | None:
    ref = res["references"].get("retain")
    if not ref:
        return None
    target = json.loads((Path(ref) / "results.json").read_text())["config"]["target"]
    return Path(target)


def cpu_line() -> str:
    """``<model name>, <n> cores visible, AVX-512 bf16|AVX-512|AVX2|...`` from /proc/cpuinfo."""
    name, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name == "unknown CPU":
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = next((label for flag, label in (("avx512_bf16", "AVX-512 with bf16"), ("avx512f", "AVX-512"),
                                          ("avx2", "AVX2")) if flag in flags), "no AVX2")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{name}, {cores} cores visible, {isa}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="synthetic-forget10")
    ap.add_argument("--method", default="npo-gd")
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--bench", default=str(Path(sys.executable).with_name("bench")),
                    help="the bench executable (default: beside this Python)")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--isa", choices=("native", "avx2"), default="native",
                    help="avx2: AVX2 code paths only (an AVX2-only CPU, estimated; see the docstring)")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="first-run-"))
    env = {**os.environ, "BENCH_CACHE": str(work / "cache"), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "BENCH_PROGRESS": "lines", **(AVX2_ENV if args.isa == "avx2" else {})}
    figures: dict[str, dict[str, float]] = {}
    aggregates: dict[str, Any] = {}
    for name in ("cold", "warm"):
        out = work / f"runs-{name}"
        out.mkdir(parents=True)
        cmd = [args.bench, "run", "--task", args.task, "--method", args.method, "--model", args.model,
               "--out", str(out)]
        started = time.time()
        total, lines, rc = run_once(cmd, env)
        if rc != 0:
            print("\n".join(ln for _, ln in lines[-20:]), file=sys.stderr)
            print(f"error: the {name} run exited with status {rc}", file=sys.stderr)
            return 1
        figures[name] = phases(total, lines, out, started)
        if name == "cold":
            (run_dir,) = [d for d in out.iterdir() if d.is_dir()]
            res = json.loads((run_dir / "results.json").read_text())
            tgt = json.loads(Path(res["references"]["target"], "results.json").read_text())["aggregates"]
            ret = json.loads(Path(res["references"]["retain"], "results.json").read_text())["aggregates"]
            aggregates = {"forget_rouge_l": {"target": tgt["forget_rouge_l"], "retain_only": ret["forget_rouge_l"],
                                             "unlearned": res["aggregates"]["forget_rouge_l"]}}

    isa = ", AVX2 code paths only" if args.isa == "avx2" else ""
    print(f"{' '.join(['bench run --task', args.task, '--method', args.method, '--model', args.model])}"
          f"  ({cpu_line()}{isa})")
    print(f"{'phase':<24}{'cold s':>9}{'warm s':>9}")
    for p in ROWS:
        label = f"  {p}" if p in DETAIL else p
        print(f"{label:<24}{figures['cold'][p]:>9.1f}{figures['warm'][p]:>9.1f}")
    r = aggregates.get("forget_rouge_l", {})
    if r:
        print(f"forget ROUGE-L: target {r['target']:.3f}, retain-only {r['retain_only']:.3f}, "
              f"unlearned {r['unlearned']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"command": args.task, "figures": figures,
                                               "aggregates": aggregates}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
