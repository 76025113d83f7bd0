"""``prepare`` trains the target in a worker process beside the retain-only model when the
model is small and the CPU has two cores: same weights, bit for bit, as one after the other."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

from bench import run as run_mod
from bench.errors import BenchError
from bench.paths import cache_dir
from bench.provenance import dir_fingerprint

TWO_CORES = len(os.sched_getaffinity(0)) >= 2 if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1) >= 2


@pytest.fixture
def quick(tmp_path, monkeypatch):
    """A prepare on a saved tiny random model with 3 optimizer steps, no reference evaluation."""
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(run_mod, "finetune_settings",
                        lambda alias: {"epochs": 1, "lr": 1e-3, "batch_size": 4, "max_steps": 3})
    monkeypatch.setattr(run_mod, "run", lambda spec, log=print, _data=None: tmp_path)

    def prepare(model_dir, parallel: bool):
        monkeypatch.setenv("BENCH_PREPARE_PARALLEL", "1" if parallel else "0")
        shutil.rmtree(cache_dir() / "prepared", ignore_errors=True)
        spec = run_mod.RunSpec(task="synthetic-forget01", model=str(model_dir), limit=2)
        task, data = run_mod.load_task(spec)
        lines: list[str] = []
        p = run_mod.prepare(spec, task, data, log=lines.append)
        return (dir_fingerprint(p.target_dir), dir_fingerprint(p.retain_dir)), lines

    return prepare


@pytest.mark.skipif(not TWO_CORES, reason="needs two CPU cores")
def test_parallel_prepare_gives_the_same_models(quick, tiny_dir):
    assert run_mod.parallel_prepare_ok(tiny_dir)
    seq, seq_lines = quick(tiny_dir, parallel=False)
    par, par_lines = quick(tiny_dir, parallel=True)
    assert any("worker process" in ln for ln in par_lines)
    assert not any("worker process" in ln for ln in seq_lines)
    assert seq == par and seq[0] != seq[1]


def test_parallel_prepare_off_switch_and_large_models(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_PREPARE_PARALLEL", "0")
    assert not run_mod.parallel_prepare_ok(tiny_dir)
    monkeypatch.setenv("BENCH_PREPARE_PARALLEL", "1")
    assert not run_mod.parallel_prepare_ok(tmp_path / "nothing-here")  # a hub id / no local weights
    big = tmp_path / "big"
    big.mkdir()
    with open(big / "model.safetensors", "wb") as f:
        f.truncate(100_000_000)  # sparse: > 80 MB of weights trains on several threads, alone
    assert not run_mod.parallel_prepare_ok(big)


def test_worker_failure_is_one_line(tmp_path):
    from bench.prepare_worker import Worker

    w = Worker()
    w.submit("building out", "build", (str(tmp_path / "out"), (str(tmp_path / "missing-model"), None, None, "m",
                                                                  "retain", [], {"epochs": 1, "lr": 1e-3}, {})))
    with pytest.raises(BenchError, match=r"prepare: the worker building out failed: BenchError: .*missing-model"):
        w.result()
    assert not (tmp_path / "out").exists()
    assert w.proc.returncode == 1 and not w.pending  # it stopped at the failed job, its job file is gone


def test_reference_runs_do_not_depend_on_the_run_seed(monkeypatch):
    """Prepared models are trained with one seed, so every --seed shares one reference run."""
    seen = []
    monkeypatch.setattr(run_mod, "run", lambda spec, log=print, _data=None: seen.append(spec))
    for seed in (0, 3):
        run_mod.reference_run(run_mod.RunSpec(task="synthetic-forget01", seed=seed), "m", None, None, print)
    assert [s.seed for s in seen] == [run_mod.PREPARE_SEED] * 2 and seen[0] == seen[1]


def test_an_unused_early_worker_is_stopped_and_an_empty_job_line_ends_it():
    import subprocess
    import sys

    from bench.prepare_worker import Worker

    w = Worker()
    w.close()
    assert w.proc.returncode is not None
    done = subprocess.run([sys.executable, "-m", "bench.prepare_worker"], input="\n", text=True, timeout=120)
    assert done.returncode == 0


@pytest.mark.skipif(not TWO_CORES, reason="needs two CPU cores")
def test_the_worker_starts_before_a_small_alias_is_built(tmp_path, monkeypatch):
    """A small alias not yet built: the worker process starts before the build (its imports
    overlap it) and then trains the retain-only model; once built, no early worker."""
    from bench import models, prepare_worker

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BENCH_PREPARE_PARALLEL", "1")
    monkeypatch.setattr(run_mod, "finetune_settings",
                        lambda alias: {"epochs": 1, "lr": 1e-3, "batch_size": 4, "max_steps": 2})
    monkeypatch.setattr(run_mod, "run", lambda spec, log=print, _data=None: tmp_path)
    events: list[str] = []
    real_init, real_build = prepare_worker.Worker.__init__, models.ALIASES["tiny"].build

    def init(self):
        events.append("worker")
        real_init(self)

    def build(out, data):
        events.append("build")
        real_build(out, data)

    monkeypatch.setattr(prepare_worker.Worker, "__init__", init)
    monkeypatch.setattr(models, "TINY_PRETRAIN", (("epochs", 1), ("lr", 3e-3), ("batch_size", 16)))
    monkeypatch.setitem(models.ALIASES, "tiny", dataclasses.replace(models.ALIASES["tiny"], build=build))
    spec = run_mod.RunSpec(task="synthetic-forget01", model="tiny", limit=2)
    task, data = run_mod.load_task(spec)
    lines: list[str] = []
    p = run_mod.prepare(spec, task, data, log=lines.append)
    assert events == ["worker", "build"]
    assert any("worker process" in ln for ln in lines) and p.retain_dir.exists() and p.target_dir.exists()
    assert run_mod._early_worker(spec, task, data) is None  # built: nothing to overlap


@pytest.mark.skipif(not TWO_CORES, reason="needs two CPU cores")
def test_the_retain_only_model_is_evaluated_while_the_worker_trains_the_target(quick, tiny_dir, monkeypatch):
    from bench import prepare_worker

    events: list[str] = []
    real_submit, real_result = prepare_worker.Worker.submit, prepare_worker.Worker.result

    def submit(self, what, kind, args):
        events.append(f"worker: {kind} {Path(args[0]).name.split('-')[0]}")
        real_submit(self, what, kind, args)

    monkeypatch.setattr(prepare_worker.Worker, "submit", submit)
    monkeypatch.setattr(prepare_worker.Worker, "result", lambda self: events.append("wait") or real_result(self))
    monkeypatch.setattr(run_mod, "run", lambda spec, log=print, _data=None:
                        events.append(f"evaluate {Path(spec.model).name.split('-')[0]}") or Path(spec.model))
    quick(tiny_dir, parallel=True)
    assert events == ["worker: build full", "evaluate retain99", "wait", "evaluate full"]


@pytest.mark.skipif(not TWO_CORES, reason="needs two CPU cores")
def test_with_overlap_the_worker_evaluates_the_target_to_the_same_run(tiny_dir, tmp_path, monkeypatch):
    """``prepare(overlap=True)`` returns before the target's reference run, which the worker
    evaluates meanwhile; settling gives the very run (directory and numbers) that this
    process evaluates without overlap, and logs the memorisation line then."""
    import json

    monkeypatch.setattr(run_mod, "finetune_settings",
                        lambda alias: {"epochs": 1, "lr": 1e-3, "batch_size": 4, "max_steps": 3})
    monkeypatch.setenv("BENCH_PREPARE_PARALLEL", "1")
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    spec = run_mod.RunSpec(task="synthetic-forget01", model=str(tiny_dir), limit=2)
    task, data = run_mod.load_task(spec)
    lines: list[str] = []
    p = run_mod.prepare(spec, task, data, log=lines.append, overlap=True)
    assert p.target_run is None and p.worker is not None
    assert any("evaluated in the worker" in ln for ln in lines)
    assert not any("forget ROUGE-L" in ln for ln in lines)  # not known yet
    worker_run = p.settle()
    assert p.worker is None and any("forget ROUGE-L" in ln for ln in lines)
    worker_numbers = json.loads((worker_run / "results.json").read_text())["aggregates"]
    shutil.rmtree(worker_run)  # evaluated again here: the models and the retain-only run are reused
    q = run_mod.prepare(spec, task, data, log=lines.append)
    assert (q.target_run, q.retain_run) == (worker_run, p.retain_run)
    assert json.loads((q.target_run / "results.json").read_text())["aggregates"] == worker_numbers


@pytest.mark.skipif(not TWO_CORES, reason="needs two CPU cores")
def test_a_run_that_fails_while_the_worker_evaluates_stops_it(tmp_path, monkeypatch):
    """The run fails (here: its method) before it needs the target's reference run: the
    worker evaluating it is stopped (never waited for) and the error is the method's."""
    import bench.checks
    from bench import models

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BENCH_PREPARE_PARALLEL", "1")
    monkeypatch.setattr(run_mod, "finetune_settings",
                        lambda alias: {"epochs": 1, "lr": 1e-3, "batch_size": 4, "max_steps": 2})
    settled, closed = [], []
    real_settle, real_close = run_mod.Prepared.settle, run_mod.Prepared.close
    monkeypatch.setattr(run_mod.Prepared, "settle", lambda self: settled.append(1) or real_settle(self))
    monkeypatch.setattr(run_mod.Prepared, "close", lambda self: closed.append(self.worker) or real_close(self))

    def boom(*a, **k):
        raise BenchError("the method failed")

    monkeypatch.setattr(bench.checks, "call_method", boom)
    monkeypatch.setattr(models, "TINY_PRETRAIN", (("epochs", 1), ("lr", 3e-3), ("batch_size", 16)))
    spec = run_mod.RunSpec(task="synthetic-forget01", model="tiny", limit=2, method="ga", out=str(tmp_path / "runs"))
    with pytest.raises(BenchError, match="the method failed"):
        run_mod.run(spec, log=lambda line: None)
    assert not settled
    (worker,) = closed
    assert worker is not None and worker.proc.returncode is not None


def test_the_warm_up_imports_the_model_classes_not_only_the_lazy_package():
    """``import transformers`` defers the model classes (about 5 s of imports): the warm-up
    must have done them, or they land on the job's first step."""
    import subprocess
    import sys

    heavy = ["transformers.models.auto.modeling_auto", "transformers.generation.utils",
             "transformers.modeling_utils", "bench.training"]
    code = ("import sys, transformers; from bench.prepare_worker import warm_up; "
            f"before = [m in sys.modules for m in {heavy!r}]; warm_up(); "
            f"print(before, [m in sys.modules for m in {heavy!r}])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert out.strip() == f"{[False] * len(heavy)} {[True] * len(heavy)}"


def test_the_worker_imports_this_bench_not_one_in_the_working_directory(tmp_path, monkeypatch):
    """``python -m`` would import a ``bench`` package in the working directory first (a
    checkout of another version): the worker runs the parent's."""
    from bench.prepare_worker import Worker

    fake = tmp_path / "bench"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise SystemExit(7)\n")
    (fake / "prepare_worker.py").write_text("raise SystemExit(7)\n")
    monkeypatch.chdir(tmp_path)
    w = Worker()
    w.submit("building out", "build", (str(tmp_path / "out"), (str(tmp_path / "missing"), None, None, "m",
                                                                  "retain", [], {"epochs": 1}, {})))
    with pytest.raises(BenchError, match="BenchError: .*missing"):  # the real worker's one-line reason
        w.result()
