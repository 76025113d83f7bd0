"""Multi-step runs (continual unlearning's shape) and task options, on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.graph import Derived, Ref
from bench.items import Step
from bench.registry import TASKS
from bench.tasks.synthetic import SyntheticForget05


@TASKS.register("_test-two-step")
class TwoStep(SyntheticForget05):
    """The synthetic forget05 authors unlearned in ``n_steps`` steps (a test task)."""

    name = "_test-two-step"

    def __init__(self, n_steps: int = 2, tag: str = "a") -> None:
        if n_steps < 1:
            raise BenchError(f"task '{self.name}': n_steps must be at least 1, got {n_steps}")
        self.n_steps = n_steps
        self.tag = tag

    def load(self, data_dir=None, limit=None):
        data = super().load(data_dir, limit)
        forget = list(data.forget)
        size = len(forget) // self.n_steps
        steps = []
        for k in range(self.n_steps):
            mine = forget[k * size:(k + 1) * size]
            later = forget[(k + 1) * size:]
            steps.append(Step(f"step{k + 1}", mine, list(data.retain) + later, data.eval_sets))
        data.steps = steps
        data.derived = list(data.derived) + [
            Derived("_test_delta", {"now": Ref("forget/probability", per_item=False),
                                    "before": Ref("forget/probability", role="previous", per_item=False)}),
        ]
        return data


from bench.metrics.derived import derived  # noqa: E402


@derived("_test_delta", "test: change of a set aggregate since the previous step")
def _delta(now, before):
    return None if now is None or before is None else now - before


def _adapter(tmp_path: Path, calls: Path, die_on: int | None = None) -> Path:
    a = tmp_path / "stepper.py"
    a.write_text(
        "import torch\n"
        f"DIE = {die_on!r}\n"
        "def unlearn(model, forget, retain, *, ctx=None):\n"
        f"    n = len(open({str(calls)!r}).read()) if __import__('os').path.exists({str(calls)!r}) else 0\n"
        "    if DIE is not None and n == DIE:\n"
        "        raise KeyboardInterrupt('killed')\n"
        f"    open({str(calls)!r}, 'a').write(str(ctx.step))\n"
        "    with torch.no_grad():\n"
        "        for p in model.module.parameters():\n"
        "            p.mul_(0.9)\n"
        "    return model\n"
    )
    return a


def test_two_step_run_resumes_after_a_kill_between_steps(tmp_path, tiny_dir):
    from bench.run import RunSpec, run

    calls = tmp_path / "calls.txt"
    adapter = _adapter(tmp_path, calls, die_on=1)
    spec = RunSpec(task="_test-two-step", method=f"{adapter}:unlearn", model=str(tiny_dir), as_is=True,
                   limit=2, out=str(tmp_path / "runs"))
    with pytest.raises(KeyboardInterrupt):
        run(spec, log=lambda s: None)
    run_dir = next((tmp_path / "runs").iterdir())
    assert (run_dir / "steps" / "0.json").exists() and not (run_dir / "results.json").exists()
    assert (run_dir / ".partial" / "step-0" / "model").exists()
    assert calls.read_text() == "0"

    adapter.write_text(adapter.read_text().replace("DIE = 1", "DIE = None"))  # no more dying
    logs: list[str] = []
    run(spec, log=logs.append)
    assert calls.read_text() == "01", "step 1 was unlearned again"
    assert any("step 1/2 (step1) already finished" in line for line in logs)
    res = json.loads((run_dir / "results.json").read_text())
    assert [r["step"] for r in res["steps"]] == ["step1", "step2"]
    assert res["steps"][0]["aggregates"]["_test_delta"] is None  # no previous step
    assert "previous step" in res["steps"][0]["derived_notes"]["_test_delta"]
    p1 = res["steps"][0]["aggregates"]["forget_probability"]
    p2 = res["steps"][1]["aggregates"]["forget_probability"]
    assert res["steps"][1]["aggregates"]["_test_delta"] == pytest.approx(p2 - p1)
    assert res["steps"][0]["model_fingerprint"] != res["steps"][1]["model_fingerprint"]
    assert len(res["sets_per_step"]) == 2 and not (run_dir / ".partial").exists()
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert {s["step"] for s in samples} == {"step1", "step2"}


def test_uninterrupted_run_gives_the_same_numbers(tmp_path, tiny_dir):
    from bench.run import RunSpec, run

    def numbers(out: str, die: int | None) -> list:
        calls = tmp_path / f"calls-{out}.txt"
        adapter = _adapter(tmp_path / out if (tmp_path / out).mkdir() is None else tmp_path, calls, die)
        spec = RunSpec(task="_test-two-step", method=f"{adapter}:unlearn", model=str(tiny_dir), as_is=True,
                       limit=2, out=str(tmp_path / out / "runs"))
        if die is not None:
            with pytest.raises(KeyboardInterrupt):
                run(spec, log=lambda s: None)
            adapter.write_text(adapter.read_text().replace(f"DIE = {die}", "DIE = None"))
        res = json.loads((run(spec, log=lambda s: None) / "results.json").read_text())
        return [r["aggregates"] for r in res["steps"]]

    assert numbers("a", None) == numbers("b", 1)


def test_task_options_typed_recorded_and_hashed(tmp_path, tiny_dir):
    from bench.run import RunSpec, build_task, run

    assert build_task("_test-two-step", {"n_steps": "3"}).n_steps == 3
    with pytest.raises(BenchError, match="has no option 'n_step'.*did you mean 'n_steps'"):
        build_task("_test-two-step", {"n_step": "3"})
    with pytest.raises(BenchError, match="n_steps='x'.*integer"):
        build_task("_test-two-step", {"n_steps": "x"})
    with pytest.raises(BenchError, match="takes no option|has no option"):
        build_task("synthetic-forget01", {"n_steps": "2"})
    base = dict(task="_test-two-step", method="none", model=str(tiny_dir), as_is=True, limit=1,
                out=str(tmp_path / "runs"))
    a = run(RunSpec(**base, task_options={"tag": "a"}), log=lambda s: None)
    b = run(RunSpec(**base, task_options={"tag": "b"}), log=lambda s: None)
    assert a != b  # options are part of the run's hash
    res = json.loads((b / "results.json").read_text())
    assert res["config"]["task_options"] == {"n_steps": 2, "tag": "b"}


def test_cli_task_set_error_is_one_line(capsys):
    from bench.cli import main

    rc = main(["run", "--task", "synthetic-forget01", "--method", "none", "--task-set", "targets=1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "task 'synthetic-forget01' has no option 'targets'" in err


def test_list_tasks_shows_options_and_sizes(capsys):
    from bench.cli import main

    assert main(["list", "tasks"]) == 0
    out = capsys.readouterr().out
    assert "n_steps: int = 2" in out and "tag: str = 'a'" in out
    assert "train: forget 40, retain 3960" in out
