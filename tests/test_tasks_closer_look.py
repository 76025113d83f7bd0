"""Continual TOFU and real-world tasks (closer-look): splits, steps, MU/FE wiring, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.errors import BenchError, DataError
from bench.graph import Results, compute
from bench.registry import TASKS
from bench.task import SetResult

# (task, steps, forget items per step, retain split size) from ../shared/data/README.md
CONTINUAL = [("tofu-continual-forget01", 10, 40, 3600), ("tofu-continual-forget05", 10, 200, 2000),
             ("tofu-continual-forget10", 9, 400, 400)]


def pairs(items) -> set[tuple[str, str]]:
    return {(it.question, it.answer) for it in items}


@pytest.mark.shared_data
@pytest.mark.parametrize("name,n_steps,per,retain", CONTINUAL)
def test_continual_steps_match_the_split(shared_data, name, n_steps, per, retain):
    data = TASKS.get(name)().load(shared_data)
    steps = data.all_steps()
    assert [s.name for s in steps] == [f"task{i}" for i in range(1, n_steps + 1)]
    assert len(data.full) == 4000 and len(data.retain) == retain and len(data.forget) == n_steps * per
    for k, st in enumerate(steps):
        assert len(st.forget) == per
        assert len(st.retain) == retain + per * (n_steps - k - 1)
        ids_retain = {it.id for it in st.retain}
        done = {it.id for s in steps[:k + 1] for it in s.forget}
        later = {it.id for s in steps[k + 1:] for it in s.forget}
        assert not (ids_retain & done), f"step {k + 1}'s retain holds forget items of steps <= {k + 1}"
        assert later <= ids_retain
        assert not (pairs(st.forget) & pairs(st.retain)), "forget and retain share a (question, answer) pair"
        sets = {es.name: es for es in st.eval_sets}
        assert list(sets) == ["forget", "retain", "real_authors", "world_facts"]
        assert {it.meta["task_id"] for it in sets["forget"].items} == {str(k + 1)}
        assert len(sets["forget"].items) == min(per, 300)  # closer-look's ds_size
        assert [len(sets[n].items) for n in ("retain", "real_authors", "world_facts")] == [300, 100, 117]
        # the forget eval items are this step's forget items (the perturbed file, same order)
        assert [it.question for it in sets["forget"].items] == [it.question for it in st.forget][:300]


@pytest.mark.shared_data
def test_continual_limit_cuts_eval_sets_only_and_task_list(shared_data):
    t = TASKS.get("tofu-continual-forget01")(task_list="3,1", ds_size=0)
    data = t.load(shared_data, limit=2)
    a, b = data.all_steps()
    assert (a.name, b.name) == ("task3", "task1")
    assert len(a.forget) == 40 and len(a.retain) == 3600 + 40 * 9
    assert len(b.retain) == 3600 + 40 * 8 and not ({it.id for it in a.forget} & {it.id for it in b.retain})
    assert all(len(es.items) == 2 for es in a.eval_sets)
    with pytest.raises(BenchError, match=r"task id 11 does not exist \(1..10\)"):
        TASKS.get("tofu-continual-forget01")(task_list="11")
    with pytest.raises(BenchError, match="listed twice"):
        TASKS.get("tofu-continual-forget01")(task_list="2,2")
    with pytest.raises(BenchError, match="ds_size"):
        TASKS.get("tofu-continual-forget01")(ds_size=-1)


@pytest.mark.shared_data
def test_continual_metric_wiring(shared_data):
    data = TASKS.get("tofu-continual-forget05")(nli_model="/local/nli").load(shared_data, limit=1)
    sets = {es.name: es for es in data.all_steps()[0].eval_sets}
    ent = {n: next(m for m in es.metrics if m.name == "entailment") for n, es in sets.items()}
    assert ent["forget"].options["premise"] == "generation" and ent["retain"].options["premise"] == "reference"
    assert ent["real_authors"].options["reference_field"] == "original_answer"
    assert ent["forget"].options["model"] == "/local/nli"
    assert sets["world_facts"].items[0].meta["original_answer"].startswith("The Eiffel Tower")
    prob = {n: next(m for m in es.metrics if m.name == "probability") for n, es in sets.items()}
    assert prob["real_authors"].options["normalized"] and not prob["retain"].options["normalized"]
    keys = [d.result_key for d in data.derived]
    assert keys[:3] == ["closer_look_mu", "closer_look_mu_retain", "closer_look_fe"]
    assert len(data.derived[0].refs()) == 18 and len(data.derived[2].refs()) == 5


def _agg(name: str, values: dict[str, float]) -> SetResult:
    return SetResult(name, [], dict(values), {})


def test_closer_look_nodes_reproduce_table_8():
    """closer-look Table 8, "Initial" row (real world): forget R, P, TR, CS, ES = 0.8057,
    0.3898, 0.6071, 0.9875, 0.6900 -> FE 0.3040; neighbour six -> MU 0.6145. Our forget TR
    aggregate is TOFU's mean(min(R, 1/R)) = 1 - closer-look's."""
    from bench.tasks.closer_look import closer_look_nodes

    sets = {
        "forget": _agg("forget", {"rouge_l": 0.8057, "probability": 0.3898, "truth_ratio": 1 - 0.6071,
                                  "cosine_similarity": 0.9875, "entailment": 0.6900, "token_entropy": 0.0}),
        "neighbor": _agg("neighbor", {"rouge_l": 0.7803, "probability": 0.3375, "truth_ratio": 0.5625,
                                      "token_entropy": 0.8854, "cosine_similarity": 0.9819, "entailment": 0.6275}),
    }
    values, notes = compute(closer_look_nodes(("neighbor",)), {"self": Results(sets)})
    assert values["closer_look_fe"] == pytest.approx(0.3040, abs=1e-4)
    assert values["closer_look_mu"] == pytest.approx(0.6145, abs=1e-4)
    sets["neighbor"].aggregates["entailment"] = None  # a missing scorer: MU missing, never computed over the rest
    values, _ = compute(closer_look_nodes(("neighbor",)), {"self": Results(sets)})
    assert values["closer_look_mu"] is None


@pytest.mark.shared_data
def test_realworld_fields(shared_data):
    data = TASKS.get("realworld")().load(shared_data)
    assert len(data.forget) == 400 and len(data.retain) == 400
    sets = {es.name: es for es in data.eval_sets}
    assert [len(sets[n].items) for n in ("forget", "neighbor")] == [400, 400]
    rows = [json.loads(line) for line in (shared_data / "real_world" / "forget_perturbed.json").read_text().splitlines()]
    it = sets["forget"].items[1]
    assert it.answer == rows[1]["golden_answer"] and it.meta["model_answer"] == rows[1]["answer"]
    assert data.forget[1].answer == rows[1]["answer"]  # closer-look trains on the model's own answer
    assert {it.meta["name"] for it in sets["forget"].items}.isdisjoint({it.meta["name"] for it in sets["neighbor"].items})
    assert not (pairs(data.forget) & pairs(data.retain))
    for es in sets.values():
        by = {m.name: m.options for m in es.metrics}
        assert by["cosine_similarity"]["reference_field"] == "model_answer"
        assert by["entailment"]["premise"] == "generation" and by["entailment"]["reference_field"] == "answer"
    assert [d.result_key for d in data.derived] == ["closer_look_mu", "closer_look_fe"]
    assert data.extras["data_notes"] == {}
    cut = TASKS.get("realworld")(max_train=5).load(shared_data)
    assert [it.answer for it in cut.forget] == [it.answer for it in data.forget[:5]] and len(cut.retain) == 5
    assert [len(es.items) for es in cut.eval_sets] == [400, 400]  # eval sets are never cut by max_train
    assert "first 5 rows" in cut.extras["data_notes"]["max_train"]
    with pytest.raises(BenchError, match="max_train must be a non-negative integer"):
        TASKS.get("realworld")(max_train=-1)


def test_data_problems_are_named(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("BENCH_DATA_DIR", raising=False)
    with pytest.raises(BenchError, match="not on the Hugging Face hub.*--data-dir"):
        TASKS.get("tofu-continual-forget01")().load(None)
    d = tmp_path / "tofu_continual"
    d.mkdir()
    (d / "forget01.json").write_text('{"question": "q", "answer": "a"}\n')
    (d / "forget01_perturbed.json").write_text('{"question": "q", "answer": "a"}\n')
    (d / "retain90.json").write_text('{"question": "r", "answer": "b"}\n')
    with pytest.raises(DataError, match=r"forget01.json.*row 0.*task_id.*; use an unchanged copy of data/tofu of "
                                        r"sail-sg/closer-look-LLM-unlearning"):
        TASKS.get("tofu-continual-forget01")().load(tmp_path)
    (d / "forget01.json").write_text('{"question": "q", "answer": "a", "task_id": "1"}\n')
    (d / "forget01_perturbed.json").write_text('{"question": "q", "answer": "a", "task_id": "1"}\n')
    with pytest.raises(DataError, match="no item with task_id 2"):
        TASKS.get("tofu-continual-forget01")().load(tmp_path)
    with pytest.raises(DataError, match=r"tofu_continual/retain_perturbed.json: file not found; use an unchanged copy "
                                        r"of data/tofu of sail-sg/closer-look-LLM-unlearning"):
        TASKS.get("tofu-continual-forget01")(task_list="1").load(tmp_path)
    with pytest.raises(DataError, match="neither 'forget.json' nor 'real_world/forget.json'.*; use an unchanged "
                                        "copy of data/real_world of sail-sg/closer-look-LLM-unlearning"):
        TASKS.get("realworld")().load(tmp_path)
    rw = tmp_path / "real_world"
    rw.mkdir()
    (rw / "forget.json").write_text('{"question": "q", "answer": "a"}\n')
    (rw / "neighbor.json").write_text('{"question": "q", "answer": "a", "golden_answer": "g"}\n')
    with pytest.raises(DataError) as e:
        TASKS.get("realworld")().load(tmp_path)
    assert str(e.value).startswith(f"{rw / 'forget.json'}, row 0, field 'golden_answer': missing field; use an "
                                   "unchanged copy of data/real_world")
    assert str(e.value).count("use an unchanged copy") == 1


def _stepper(tmp_path: Path, calls: Path, die_on: int | None) -> Path:
    a = tmp_path / "stepper.py"
    a.write_text(
        "import os, torch\n"
        f"DIE = {die_on!r}\n"
        "def unlearn(model, forget, retain, *, ctx=None):\n"
        f"    n = len(open({str(calls)!r}).read()) if os.path.exists({str(calls)!r}) else 0\n"
        "    if DIE is not None and n == DIE:\n"
        "        raise KeyboardInterrupt('killed')\n"
        f"    open({str(calls)!r}, 'a').write(str(ctx.step))\n"
        "    assert ctx.steps == 2 and ctx.step_reference == 'previous'\n"
        "    with torch.no_grad():\n"
        "        for p in model.module.parameters():\n"
        "            p.mul_(0.9)\n"
        "    return model\n"
    )
    return a


@pytest.mark.slow
@pytest.mark.shared_data
def test_continual_run_resumes_after_a_kill_between_steps(shared_data, tmp_path, tiny_bundle):
    from bench.models import save_bundle
    from bench.run import RunSpec, run

    model = tmp_path / "tiny-model"
    save_bundle(tiny_bundle, model)
    calls = tmp_path / "calls.txt"
    adapter = _stepper(tmp_path, calls, die_on=1)
    spec = RunSpec(task="tofu-continual-forget01", method=f"{adapter}:unlearn", model=str(model), as_is=True,
                   limit=1, data_dir=str(shared_data), out=str(tmp_path / "runs"),
                   task_options={"task_list": "1,2", "embedding_model": str(tmp_path / "no-embedder"),
                                 "nli_model": str(tmp_path / "no-nli")})
    with pytest.raises(KeyboardInterrupt):
        run(spec, log=lambda s: None)
    run_dir = next((tmp_path / "runs").iterdir())
    assert (run_dir / "steps" / "0.json").exists() and not (run_dir / "steps" / "1.json").exists()
    adapter.write_text(adapter.read_text().replace("DIE = 1", "DIE = None"))
    logs: list[str] = []
    run(spec, log=logs.append)
    assert calls.read_text() == "01", "a finished step was unlearned again"
    assert any("step 1/2 (task1) already finished" in line for line in logs)
    res = json.loads((run_dir / "results.json").read_text())
    assert [r["step"] for r in res["steps"]] == ["task1", "task2"]
    for row in res["steps"]:
        agg = row["aggregates"]
        assert agg["forget_rouge_l"] is not None and agg["retain_probability"] is not None
        assert agg["model_utility"] is not None  # TOFU's 9 numbers need no scorer model
        assert agg["forget_cosine_similarity"] is None and agg["closer_look_mu"] is None  # no scorer: missing
    forget_ids = [sets["forget"]["item_ids"] for sets in res["sets_per_step"]]
    assert forget_ids[0] != forget_ids[1]  # each step is evaluated on its own forget set


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.parametrize("step_reference", ["previous", "initial"])
def test_step_reference_initial_gives_later_steps_the_initial_model_as_reference(shared_data, tmp_path,
                                                                               tiny_dir, step_reference):
    """``--step-reference initial``: from step 2 on, every train() call inside the method
    takes its reference from the model before step 1 (bench.training.reference_model);
    ``previous`` (and step 1 either way): the incoming model, i.e. no override."""
    from bench.run import RunSpec, run

    model = tiny_dir
    seen = tmp_path / "seen.jsonl"
    adapter = tmp_path / "refs.py"
    adapter.write_text(
        "import json\n"
        "from bench import training\n"
        "def unlearn(model, forget, retain, *, ctx=None):\n"
        f"    with open({str(seen)!r}, 'a') as f:\n"
        "        f.write(json.dumps([ctx.step, ctx.step_reference, training._REFERENCE.get()]) + '\\n')\n"
        "    return model\n"
    )
    spec = RunSpec(task="tofu-continual-forget01", method=f"{adapter}:unlearn", model=str(model), as_is=True,
                   limit=1, data_dir=str(shared_data), out=str(tmp_path / "runs"), step_reference=step_reference,
                   task_options={"task_list": "1,2", "embedding_model": str(tmp_path / "no-embedder"),
                                 "nli_model": str(tmp_path / "no-nli")})
    run(spec, log=lambda s: None)
    rows = [json.loads(line) for line in seen.read_text().splitlines()]
    assert [r[:2] for r in rows] == [[0, step_reference], [1, step_reference]]
    assert rows[0][2] is None
    if step_reference == "previous":
        assert rows[1][2] is None
    else:
        assert rows[1][2] is not None and Path(rows[1][2]).resolve() == model.resolve()
