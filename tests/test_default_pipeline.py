"""The README's first command, end to end: the tiny model prepared on the synthetic task,
unlearned with NPO+GD (slow: about 50 s on 2 CPU cores, most of it preparing)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import main

pytestmark = pytest.mark.slow


def test_default_pipeline_memorises_then_forgets(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "runs"
    args = ["run", "--task", "synthetic-forget10", "--method", "npo-gd", "--model", "tiny", "--out", str(out)]
    assert main(args) == 0
    stdout = capsys.readouterr().out
    for needle in ("model utility", "forget quality", "forget ROUGE-L", "retain ROUGE-L", "report:"):
        assert needle in stdout, needle

    (run_dir,) = [d for d in out.iterdir() if d.is_dir()]
    res = json.loads((run_dir / "results.json").read_text())
    target = json.loads(Path(res["references"]["target"], "results.json").read_text())["aggregates"]
    retain = json.loads(Path(res["references"]["retain"], "results.json").read_text())["aggregates"]
    agg = res["aggregates"]

    # the target really memorised the forget set, beyond what the retain-only model guesses
    assert target["forget_rouge_l"] > 0.85
    assert target["forget_rouge_l"] > retain["forget_rouge_l"] + 0.1
    assert target["forget_extraction_strength"] > retain["forget_extraction_strength"] + 0.2
    # the unlearning visibly lowered it
    assert agg["forget_rouge_l"] < target["forget_rouge_l"] - 0.1
    assert agg["forget_probability"] < target["forget_probability"] / 2
    # every headline number is there and in range
    assert 0 < agg["model_utility"] <= 1 and 0 < agg["forget_quality"] <= 1
    assert target["forget_quality"] < agg["forget_quality"]  # closer to the retain model after unlearning

    # a second run reuses the prepared models and reference runs (and is skipped when identical)
    assert main(args) == 0
    assert "skipped" in capsys.readouterr().out
    assert main(args[:-2] + ["--out", str(tmp_path / "runs2"), "--set", "epochs=2"]) == 0
    stdout = capsys.readouterr().out
    assert "reusing full model" in stdout and "fine-tuning" not in stdout
