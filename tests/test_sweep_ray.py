"""Sweeps on a local Ray cluster, and kill -9 of the sweep driver (marker ``sweep``; tox -e sweep)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.sweep


@pytest.fixture(autouse=True)
def _only_when_selected(request):
    expr = request.config.getoption("markexpr") or ""
    if "sweep" not in expr or "not sweep" in expr:
        pytest.skip("Ray sweeps take minutes: run `tox -e sweep` or `pytest -m sweep`")
    pytest.importorskip("ray", reason="ray not installed (pip install '.[ray]')")


def _sweep(tiny_dir: Path, out: Path, cache: Path) -> subprocess.Popen:
    env = {**os.environ, "BENCH_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    args = [sys.executable, "-m", "bench.cli", "sweep", "--tasks", "synthetic-forget01",
            "--methods", "ga,gd,npo-gd", "--seeds", "0,1", "--models", str(tiny_dir), "--limit", "2",
            "--grid", "epochs=1", "--out", str(out)]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _finished(out: Path) -> dict[str, tuple[int, str]]:
    got = {}
    for d in (out / "runs").glob("*"):
        r = d / "results.json"
        if r.exists():
            got[d.name] = (r.stat().st_mtime_ns, r.read_text())
    return got


def test_ray_sweep_killed_and_rerun(tmp_path, tiny_dir, monkeypatch):
    """kill -9 of the driver after the first finished trial; the rerun skips every finished
    trial (their results.json untouched), computes the rest, and the numbers equal those of
    an uninterrupted sequential sweep."""
    out, cache = tmp_path / "s", tmp_path / "cache"
    p = _sweep(tiny_dir, out, cache)
    lines = []
    deadline = time.time() + 900
    while time.time() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("[1/6]"):
            break
    assert any(ln.startswith("sweep: ray cluster") for ln in lines), "".join(lines)
    assert any(ln.startswith("[1/6] computed") for ln in lines), "".join(lines)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    time.sleep(3)
    before = _finished(out)
    assert 1 <= len(before) < 6

    p = _sweep(tiny_dir, out, cache)
    text, _ = p.communicate(timeout=1200)
    assert p.returncode == 0, text
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["executor"] == "ray"
    assert doc["counts"]["skipped"] == len(before) and doc["counts"]["computed"] == 6 - len(before)
    after = _finished(out)
    assert len(after) == 6
    for name, (mtime, content) in before.items():
        assert after[name] == (mtime, content), f"{name} was recomputed"
    assert f"{6 - len(before)} computed, {len(before)} skipped" in text

    # the same numbers as an uninterrupted run of the same trials, one after another
    from bench import sweep as sw

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache2"))
    clean = sw.execute(sw.parse({"tasks": ["synthetic-forget01"], "methods": ["ga", "gd", "npo-gd"],
                                 "seeds": [0, 1], "models": [str(tiny_dir)], "limit": 2,
                                 "grid": {"epochs": [1]}, "out": str(tmp_path / "clean")}),
                       use_ray=False, report=False, log=lambda s: None)
    for t in clean["trials"]:
        a = json.loads(Path(t["run_dir"], "results.json").read_text())
        b = json.loads((out / "runs" / Path(t["run_dir"]).name / "results.json").read_text())
        assert a["sets"] == b["sets"] and a["aggregates"] == b["aggregates"], t["label"]
