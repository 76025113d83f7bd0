"""benchmarks/first_run.py cuts a captured run into phases that add up to its total."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "first_run.py"


@pytest.fixture(scope="module")
def first_run():
    spec = importlib.util.spec_from_file_location("first_run", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write(d: Path, data: dict) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "results.json").write_text(json.dumps(data))
    return d


def _cold_run_files(tmp_path: Path) -> Path:
    """A cold run's files: both prepared models (30 s, 25 s), their reference runs (1.25 s,
    1.5 s) and the run (unlearn 4 s, evaluate 1.5 s); returns the run's --out."""
    target_dir, retain_dir = tmp_path / "prep" / "full", tmp_path / "prep" / "retain"
    for d, s in ((target_dir, 30.0), (retain_dir, 25.0)):
        d.mkdir(parents=True)
        (d / "bench_prepared.json").write_text(json.dumps({"seconds": s}))
    retain_run = _write(tmp_path / "runs" / "r", {"timings": {"total_s": 1.5}, "config": {"target": str(retain_dir)}})
    target_run = _write(tmp_path / "runs" / "t", {"timings": {"total_s": 1.25}, "config": {"target": str(target_dir)}})
    out = tmp_path / "out"
    _write(out / "run", {"timings": {"unlearn_s": 4.0, "evaluate_s": 1.5}, "config": {"target": str(target_dir)},
                         "references": {"target": str(target_run), "retain": str(retain_run)}})
    return out


def test_cold_run_phases(first_run, tmp_path):
    started = time.time() - 1
    out = _cold_run_files(tmp_path)
    lines = [(1.0, "tiny: building the task's model (2 layers of 80, ...)"),
             (6.0, "tiny: built a 0.29M-parameter model"),
             (10.0, "prepare: fine-tuning the full model from tiny on 864 items"),
             (10.0, "prepare: the full model trains in a worker process beside the retain90 model"),
             (36.0, "evaluate: 2016 requests over 4 sets (224 generate, 1792 loglikelihood)"),
             (37.5, "run: wrote .../retain/results.json"),
             (42.0, "evaluate: 2016 requests over 4 sets (224 generate, 1792 loglikelihood)"),
             (43.2, "evaluate: answered in 1.2 s"),
             (43.25, "prepare: forget ROUGE-L 0.902 for the target vs 0.763 for the retain-only model"),
             (43.3, "run: unlearning with npo-gd")]
    ph = first_run.phases(52.0, lines, out, started)
    assert ph["start-up"] == 6.0 and ph["tiny build + pretrain"] == 4.0
    assert ph["prepare (both models)"] == 32.0  # to the target's evaluation, the retain-only one inside
    assert (ph["prepare target"], ph["prepare retain-only"], ph["evaluate retain-only"]) == (30.0, 25.0, 1.5)
    assert (ph["evaluate target"], ph["unlearn"], ph["evaluate"]) == (1.25, 4.0, 1.5)
    summed = sum(ph[p] for p in first_run.PHASES if p != "total")
    assert summed == pytest.approx(52.0) and ph["other"] == pytest.approx(52.0 - 6 - 4 - 32 - 1.25 - 4 - 1.5)


def test_a_target_evaluated_in_the_worker_is_detail_beside_unlearning(first_run, tmp_path):
    """With the overlap, prepare ends at its line saying so; the target's evaluation (in the
    worker, while this process unlearns) is a detail row, outside the sum."""
    started = time.time() - 1
    out = _cold_run_files(tmp_path)
    lines = [(6.0, "tiny: built a 0.29M-parameter model"),
             (10.0, "prepare: fine-tuning the full model from tiny on 864 items"),
             (36.0, "evaluate: 2016 requests over 4 sets (224 generate, 1792 loglikelihood)"),
             (41.0, "prepare: the full model's reference run is evaluated in the worker meanwhile"),
             (41.1, "run: unlearning with npo-gd"),
             (42.0, "evaluate: 2016 requests over 4 sets (224 generate, 1792 loglikelihood)"),
             (46.0, "evaluate: 2016 requests over 4 sets (224 generate, 1792 loglikelihood)"),
             (47.6, "prepare: forget ROUGE-L 0.902 for the target vs 0.763 for the retain-only model")]
    ph = first_run.phases(50.0, lines, out, started)
    assert ph["prepare (both models)"] == 31.0
    assert (ph["evaluate target"], ph["evaluate target (worker)"]) == (0.0, 1.25)
    summed = sum(ph[p] for p in first_run.PHASES if p != "total")
    assert summed == pytest.approx(50.0) and ph["other"] == pytest.approx(50.0 - 6 - 4 - 31 - 4 - 1.5)


def test_the_avx2_estimate_limits_every_kernel_library(first_run, tmp_path):
    """``--isa avx2``: torch's own kernels, MKL and oneDNN each get their AVX2 limit (a
    child process with them reports torch's capability as AVX2)."""
    import os
    import subprocess
    import sys

    assert set(first_run.AVX2_ENV) == {"ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA"}
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                         env={**os.environ, **first_run.AVX2_ENV}, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() in ("AVX2", "DEFAULT"), out.stderr  # DEFAULT: a CPU without AVX2 at all


def test_the_table_prints_every_phase_and_detail_row_once(first_run):
    assert sorted(first_run.ROWS) == sorted(first_run.PHASES + first_run.DETAIL)
    assert len(set(first_run.ROWS)) == len(first_run.ROWS)
