"""``bench run --eval-every``: evaluation along training (bench/curves.py), on the tiny
random model of conftest used as it is (no preparing), a few optimizer steps, --limit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.items import Step
from bench.registry import TASKS
from bench.tasks.synthetic import SyntheticForget01

QUIET = {"log": lambda s: None}
GA = {"max_steps": "4", "batch_size": "2", "grad_accum": "1", "lr": "1e-3", "warmup_epochs": "0"}


@TASKS.register("_test-curve-two-step")
class CurveTwoStep(SyntheticForget01):
    """The synthetic forget01 author unlearned in two steps (a test task)."""

    name = "_test-curve-two-step"

    def load(self, data_dir=None, limit=None):
        data = super().load(data_dir, limit)
        forget = list(data.forget)
        half = len(forget) // 2
        data.steps = [Step("first", forget[:half], list(data.retain), data.eval_sets),
                      Step("second", forget[half:], list(data.retain), data.eval_sets)]
        return data


def _spec(tmp_path: Path, model: Path, out: str, **kw):
    from bench.run import RunSpec

    base = dict(task="synthetic-forget01", method="ga", model=str(model), as_is=True, limit=2,
                out=str(tmp_path / out), options=dict(GA), cache=False)
    base.update(kw)
    return RunSpec(**base)


def _results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def test_bad_values_are_one_line_errors_before_any_model_is_built(tmp_path, tiny_dir, monkeypatch, capsys):
    from bench import models
    from bench.cli import main
    from bench.run import run

    def no_model(*a, **k):
        raise AssertionError("a model was built before the options were checked")

    monkeypatch.setattr(models, "load_bundle", no_model)
    cases = [
        (dict(eval_every="0"), "--eval-every must be a positive number of optimizer steps (e.g. 20) or 'epoch'"),
        (dict(eval_every="2e"), "--eval-every must be"),
        (dict(eval_every=-3), "--eval-every must be"),
        (dict(eval_every="2", eval_sets="forget,nope"), "task 'synthetic-forget01' has no eval set 'nope'"),
        (dict(eval_every="2", eval_sets="forget,,retain"), "an empty set name"),
        (dict(eval_sets="forget"), "--eval-sets given without --eval-every"),
        (dict(eval_every="epoch", method="none", options={}), "method 'none' does not train the model it returns"),
        (dict(eval_every="2", method="tv", options={}, original=str(tiny_dir)),
         "method 'tv' does not train the model it returns"),
    ]
    for kw, message in cases:
        with pytest.raises(BenchError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
            run(_spec(tmp_path, tiny_dir, "bad", **kw), **QUIET)
        assert "\n" not in str(e.value)
    rc = main(["run", "--task", "synthetic-forget01", "--method", "ga", "--model", str(tiny_dir), "--as-is",
               "--out", str(tmp_path / "cli"), "--eval-every", "2", "--eval-sets", "holdout_x"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "no eval set 'holdout_x'" in err
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").rglob("results.json"))


def test_parse_and_default_sets():
    from bench.curves import default_sets, parse_eval_every

    assert parse_eval_every("20") == (20, False) and parse_eval_every(3) == (3, False)
    assert parse_eval_every("epoch") == (0, True) and parse_eval_every(" Epoch ") == (0, True)
    for bad in ("0", "-1", "1.5", "", True, 0, None):
        with pytest.raises(BenchError):
            parse_eval_every(bad)
    task = TASKS.get("synthetic-forget01")()
    data = task.load(None, 1)
    # the frontier (log10_forget_quality, model_utility) reads forget + the 3 utility sets, not holdout
    assert default_sets(task, data, data.eval_sets) == ["forget", "retain", "real_authors", "world_facts"]


def test_curve_points_match_final_evaluation_and_training_is_undisturbed(tmp_path, tiny_dir):
    """Full fine-tuning evaluated in place every 2 steps: same weights and numbers as without."""
    from bench.report import write_report
    from bench.run import run

    plain = _results(run(_spec(tmp_path, tiny_dir, "plain"), **QUIET))
    logs: list[str] = []
    run_dir = run(_spec(tmp_path, tiny_dir, "curve", eval_every="2", eval_sets="forget,retain"), log=logs.append)
    res = _results(run_dir)

    # bit-identical final weights and results
    assert res["steps"][0]["model_fingerprint"] == plain["steps"][0]["model_fingerprint"]
    assert json.dumps(res["aggregates"], sort_keys=True) == json.dumps(plain["aggregates"], sort_keys=True)
    assert json.dumps(res["sets"], sort_keys=True) == json.dumps(plain["sets"], sort_keys=True)
    assert res["training"][0]["losses"] == plain["training"][0]["losses"]
    assert "curves" not in plain

    (curve,) = res["curves"]
    assert curve["eval_every"] == 2 and curve["eval_sets"] == ["forget", "retain"]
    pts = curve["points"]
    assert [p["train_step"] for p in pts] == [2, 4]  # max_steps 4, every 2
    assert [p["epoch"] for p in pts] == [0.5, 1.0]  # 8 forget QA / batch 2 = 4 steps per epoch
    assert sum("in place" in line for line in logs) == 2
    assert pts[0]["sets"] != pts[1]["sets"], "training changed nothing between the checkpoints"
    # the last checkpoint is the final model: the same numbers, computed again (no cache), up
    # to the float rounding of another batching (2 of the 5 sets; exact in the LoRA test)
    assert pts[-1]["model_fingerprint"] == res["steps"][0]["model_fingerprint"]
    for name in ("forget", "retain"):
        for key, v in res["sets"][name]["aggregates"].items():
            assert pts[-1]["sets"][f"{name}/{key}"] == pytest.approx(v, rel=1e-5, abs=1e-9), (name, key)
    assert not any(k.startswith(("real_authors/", "world_facts/")) for k in pts[-1]["sets"])
    assert res["config"]["eval_along_training"] == {"eval_every": 2, "eval_sets": ["forget", "retain"]}
    assert Path(res["run_dir"]).name != Path(plain["run_dir"]).name  # part of the run's hash
    assert json.loads((run_dir / "steps" / "0.json").read_text())["curve"] == curve

    text, md, _ = write_report([run_dir, plain["run_dir"]], tmp_path / "report")
    png = md.parent / "curves-0.png"
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
    assert "curves-0.png" in md.read_text() and "| 4 | 1.0000 |" in md.read_text()
    assert not (md.parent / "curves-1.png").exists()  # the run without a curve
    page = (md.parent / "report.html").read_text()
    assert page.count('class="curve-plot"') == 1 and "Along training" in page


def test_lora_dropout_run_keeps_its_trajectory_when_evaluation_draws_random_numbers(tmp_path, tiny_dir, monkeypatch):
    """LoRA (evaluated on a merged copy) with dropout: the training draws from the global RNG
    after each checkpoint; an evaluation that also draws must not change the weights."""
    import random

    import numpy as np
    import torch

    from bench.curves import CurveRecorder
    from bench.run import run

    opts = {**GA, "lora_r": "4", "lora_dropout": "0.5", "epochs": "2", "max_steps": "none", "lr": "1e-2"}
    plain = _results(run(_spec(tmp_path, tiny_dir, "plain", options=opts), **QUIET))
    original = CurveRecorder._evaluate

    def greedy_for_randomness(self, *a, **k):
        out = original(self, *a, **k)
        torch.rand(1000), random.random(), np.random.rand(10)  # an evaluation that draws
        return out

    monkeypatch.setattr(CurveRecorder, "_evaluate", greedy_for_randomness)
    logs: list[str] = []
    every_set = ",".join(plain["sets"])  # all of them: the same requests, batched as the final evaluation
    res = _results(run(_spec(tmp_path, tiny_dir, "curve", options=opts, eval_every="epoch",
                             eval_sets=every_set), log=logs.append))
    assert res["steps"][0]["model_fingerprint"] == plain["steps"][0]["model_fingerprint"]
    assert res["training"][0]["losses"] == plain["training"][0]["losses"]
    pts = res["curves"][0]["points"]
    assert [p["train_step"] for p in pts] == [4, 8] and [p["epoch"] for p in pts] == [1.0, 2.0]
    assert sum("on a copy" in line for line in logs) == 2
    # the merged copy at the last checkpoint is the final (merged) model
    assert pts[-1]["model_fingerprint"] == res["steps"][0]["model_fingerprint"]
    final = {f"{n}/{k}": v for n, d in res["sets"].items() for k, v in d["aggregates"].items()}
    assert pts[-1]["sets"] == final  # exactly


def test_multi_step_curves_resume_after_a_kill_and_reuse_finished_points(tmp_path, tiny_dir, monkeypatch):
    from bench.curves import CurveRecorder
    from bench.run import run

    spec = _spec(tmp_path, tiny_dir, "runs", task="_test-curve-two-step", eval_every="1", eval_sets="forget",
                 options={**GA, "max_steps": "2"}, limit=1)
    original, calls = CurveRecorder._evaluate, []

    def dies_at_the_fourth(self, *a, **k):
        calls.append(self.k)
        if len(calls) == 4:  # step 2's second checkpoint
            raise KeyboardInterrupt("killed")
        return original(self, *a, **k)

    monkeypatch.setattr(CurveRecorder, "_evaluate", dies_at_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        run(spec, **QUIET)
    run_dir = next((tmp_path / "runs").iterdir())
    assert calls == [0, 0, 1, 1]
    assert len(json.loads((run_dir / "curves" / "1.json").read_text())["points"]) == 1  # kept on disk
    monkeypatch.setattr(CurveRecorder, "_evaluate", original)
    logs: list[str] = []
    res = _results(run(spec, log=logs.append))
    assert any("step 1/2 (first) already finished" in line for line in logs)
    assert sum("stored" in line for line in logs) == 1  # step 2's first point, not evaluated again
    assert [c["step"] for c in res["curves"]] == ["first", "second"]
    assert [[p["train_step"] for p in c["points"]] for c in res["curves"]] == [[1, 2], [1, 2]]
    assert res["curves"][1]["points"][-1]["model_fingerprint"] == res["steps"][1]["model_fingerprint"]
    assert "curve" not in res["steps"][0]  # curves live under results["curves"]


def test_a_method_that_never_reaches_a_checkpoint_gets_a_note(tmp_path, tiny_dir):
    from bench.run import run

    adapter = tmp_path / "scale.py"
    adapter.write_text("import torch\n"
                       "def unlearn(model, forget, retain):\n"
                       "    with torch.no_grad():\n"
                       "        for p in model.module.parameters():\n"
                       "            p.mul_(0.9)\n"
                       "    return model\n")
    logs: list[str] = []
    res = _results(run(_spec(tmp_path, tiny_dir, "runs", method=f"{adapter}:unlearn", options={}, limit=1,
                             eval_every="5"), log=logs.append))
    (curve,) = res["curves"]
    assert curve["points"] == [] and "reached no checkpoint" in curve["note"]
    assert any("curve: note:" in line for line in logs)
