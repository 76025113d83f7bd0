"""SemEval-2025 Task 4 tasks: splits against the data README, subtask filtering, --limit per
(subtask, kind) group, the 12-way and per-subtask aggregates (forget as 1 - x), the MIA
score, the MMLU gate, and the errors."""

from __future__ import annotations

import json

import pytest

from bench.errors import BenchError, DataError
from bench.graph import Results, compute
from bench.items import split_format
from bench.registry import TASKS
from bench.run import build_task
from bench.task import SetResult
from bench.tasks import semeval


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("BENCH_DATA_DIR", raising=False)
    monkeypatch.delenv("BENCH_MMLU_DIR", raising=False)


def _rows(prefix: str) -> list[dict]:
    out = []
    for t in ("Task1", "Task2", "Task3"):
        for k in range(3):
            out.append({"id": f"{prefix}{t}-{k}sc1", "input": f"{prefix} {t} story {k} begins", "output": f"and ends {k}", "task": t})
            out.append({"id": f"{prefix}{t}-{k}qa0", "input": f"{prefix} {t} who {k}?", "output": f"Name{k}", "task": t})
    return out


@pytest.fixture()
def mini(tmp_path):
    """semeval25/{forget,retain}.jsonl (3 sc + 3 qa per subtask) and a 2-subject mmlu/."""
    root = tmp_path / "semeval25"
    root.mkdir()
    for split in ("forget", "retain"):
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows(split)))
    for sub in ("anatomy", "virology"):
        for part, n in (("dev", 5), ("test", 4)):
            d = tmp_path / "mmlu" / part
            d.mkdir(parents=True, exist_ok=True)
            lines = ["question,choice0,choice1,choice2,choice3,answer"] + [f"{sub} q{i}?,w,x,y,z,{i % 4}" for i in range(n)]
            (d / f"{sub}_{part}.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


# --- the real data ----------------------------------------------------------------------


@pytest.mark.shared_data
def test_semeval25_splits_on_shared_data(shared_data):
    data = build_task("semeval25", {"mmlu_subjects": "anatomy", "mmlu_per_subject": "2"}).load(shared_data)
    # data README: forget 2732 / retain 2734 rows
    assert (len(data.forget), len(data.retain), len(data.full)) == (2732, 2734, 5466)
    assert split_format(data.forget) == split_format(data.full) == "raw"
    ids = {s: {it.meta["id"] for it in getattr(data, s)} for s in ("forget", "retain")}
    assert not ids["forget"] & ids["retain"]
    assert not {it.question for it in data.forget} & {it.question for it in data.retain}
    by = {es.name: es for es in data.eval_sets}
    assert set(by) == {"forget", "retain", "mmlu"} and len(by["mmlu"].items) == 2
    assert (by["forget"].format, by["forget"].max_new_tokens, by["forget"].stop) == ("raw", 256, ())
    assert "MIA score not computed" in data.extras["data_notes"]["mia"]
    counts = {}
    for it in by["forget"].items:
        key = (it.meta["task"], semeval.row_kind(it.meta["id"]))
        counts[key] = counts.get(key, 0) + 1
    assert counts == {("Task1", "sc"): 243, ("Task1", "qa"): 243, ("Task2", "sc"): 250,
                      ("Task2", "qa"): 1250, ("Task3", "sc"): 373, ("Task3", "qa"): 373}


@pytest.mark.shared_data
@pytest.mark.parametrize("k,forget,retain", [(1, 486, 492), (2, 1500, 1500), (3, 746, 742)])
def test_subtask_filter_on_shared_data(shared_data, k, forget, retain):
    data = build_task(f"semeval25-task{k}", {"mmlu_subjects": "anatomy"}).load(shared_data, limit=2)
    assert (len(data.forget), len(data.retain)) == (forget, retain)
    assert {it.meta["task"] for it in data.forget} == {f"Task{k}"}
    by = {es.name: es for es in data.eval_sets}
    assert len(by["forget"].items) == len(by["retain"].items) == 4  # 2 sc + 2 qa


# --- items, limit ---------------------------------------------------------------------


def test_raw_input_and_limit_per_group(mini):
    data = build_task("semeval25", {"mmlu_subjects": "anatomy,virology"}).load(mini / "semeval25", limit=2)
    by = {es.name: es for es in data.eval_sets}
    forget = by["forget"]
    assert len(forget.items) == 12  # first 2 of each of the 6 (subtask, kind) groups
    assert forget.items[0].question == "forget Task1 story 0 begins" and forget.items[0].answer == "and ends 0"
    assert forget.format == "raw"
    assert len(data.forget) == 18  # training never cut by --limit
    data = build_task("semeval25", {"mmlu_subjects": "anatomy", "max_train": "1"}).load(mini / "semeval25")
    assert len(data.forget) == len(data.retain) == 6 and len(data.full) == 12  # 1 per (subtask, kind)
    assert "max_train" in data.extras["data_notes"]
    # MMLU found beside the data folder; --limit keeps the set's first questions
    assert [it.id for it in by["mmlu"].items] == ["mmlu/anatomy/0", "mmlu/anatomy/1"]
    full = build_task("semeval25", {"mmlu_subjects": "anatomy,virology", "mmlu_per_subject": "3"}).load(mini)
    assert len(next(es for es in full.eval_sets if es.name == "mmlu").items) == 6
    assert by["mmlu"].items[0].question.startswith("The following are multiple choice questions (with answers) about anatomy.")


def test_mia_sets_from_member_files(mini):
    mem, non = mini / "member.jsonl", mini / "nonmember.jsonl"
    mem.write_text(json.dumps({"id": "m0", "document": "a member doc"}) + "\n")
    non.write_text(json.dumps({"id": "n0", "document": "a non-member doc"}) + "\n")
    data = build_task("semeval25-task1", {"member": str(mem), "nonmember": str(non),
                                          "mmlu_subjects": "anatomy"}).load(mini)
    by = {es.name: es for es in data.eval_sets}
    assert by["mia_member"].format == "document" and by["mia_member"].items[0].answer == "a member doc"
    assert [m.name for m in by["mia_nonmember"].metrics] == ["mia_loss"]
    assert "mia" not in data.extras["data_notes"]


# --- scoring on hand-made values --------------------------------------------------------

FORGET = {("Task1", "sc"): 0.2, ("Task1", "qa"): 0.0, ("Task2", "sc"): 0.5, ("Task2", "qa"): 0.25,
          ("Task3", "sc"): 0.6, ("Task3", "qa"): 0.0}
RETAIN = {("Task1", "sc"): 0.8, ("Task1", "qa"): 1.0, ("Task2", "sc"): 0.5, ("Task2", "qa"): 0.5,
          ("Task3", "sc"): 0.4, ("Task3", "qa"): 1.0}


def _set(name: str, means: dict, tasks=("Task1", "Task2", "Task3")) -> SetResult:
    """Two items per (subtask, kind) whose mean is the given value."""
    ids, reg, know = [], [], []
    for (t, kind), m in means.items():
        if t not in tasks:
            continue
        for delta in (-0.0, 0.0) if m in (0.0, 1.0) else (-0.1, 0.1):
            ids.append(f"{name}/{len(ids)}")
            v = {"task": t, "score": m + delta}
            reg.append(v if kind == "sc" else None)
            know.append(v if kind == "qa" else None)
    return SetResult(name, ids, {}, {"semeval_regurgitation": reg, "semeval_knowledge": know})


def _mmlu(acc: float) -> SetResult:
    return SetResult("mmlu", ["mmlu/0"], {"choice_accuracy": acc}, {"choice_accuracy": [acc]})


def _mia(members, nonmembers) -> dict[str, SetResult]:
    return {"mia_member": SetResult("mia_member", [f"m/{i}" for i in range(len(members))], {}, {"mia_loss": members}),
            "mia_nonmember": SetResult("mia_nonmember", [f"n/{i}" for i in range(len(nonmembers))], {}, {"mia_loss": nonmembers})}


def test_twelve_way_aggregate_takes_forget_as_one_minus_x():
    task = TASKS.get("semeval25")()
    sets = {"forget": _set("forget", FORGET), "retain": _set("retain", RETAIN), "mmlu": _mmlu(0.5),
            **_mia([-1.0, -3.0], [-2.0, -4.0])}  # AUC 0.75 -> MIA score 0.5
    vals, notes = compute(task.derived(), {"self": Results(sets)})
    # forget 1-x: 0.8, 1, 0.5, 0.75, 0.4, 1; retain: 0.8, 1, 0.5, 0.5, 0.4, 1
    recips = [1.25, 1, 2, 4 / 3, 2.5, 1, 1.25, 1, 2, 2, 2.5, 1]
    assert vals["semeval_task_aggregate"] == pytest.approx(12 / sum(recips))
    assert vals["semeval_forget_Task2_knowledge"] == pytest.approx(0.25)
    assert vals["mia_loss_auc"] == 0.75 and vals["semeval_mia_score"] == pytest.approx(0.5)
    final = (12 / sum(recips) + 0.5 + 0.5) / 3
    assert vals["semeval_final"] == pytest.approx(final) and vals["semeval_final_ungated"] == pytest.approx(final)
    assert vals["semeval_mmlu_gate_passed"] == 1.0 and not notes


def test_forget_value_one_makes_aggregate_zero():
    task = TASKS.get("semeval25")()
    forget = {**FORGET, ("Task3", "qa"): 1.0}  # fully remembered -> 1 - 1 = 0
    sets = {"forget": _set("forget", forget), "retain": _set("retain", RETAIN), "mmlu": _mmlu(0.5)}
    vals, _ = compute(task.derived(), {"self": Results(sets)})
    assert vals["semeval_task_aggregate"] == 0.0


def test_mmlu_gate_warns_and_withholds_final():
    task = TASKS.get("semeval25")()
    sets = {"forget": _set("forget", FORGET), "retain": _set("retain", RETAIN), "mmlu": _mmlu(0.30),
            **_mia([-1.0, -3.0], [-2.0, -4.0])}
    vals, notes = compute(task.derived(), {"self": Results(sets)})
    agg = 12 / sum([1.25, 1, 2, 4 / 3, 2.5, 1, 1.25, 1, 2, 2, 2.5, 1])
    assert vals["semeval_final"] is None
    assert vals["semeval_final_ungated"] == pytest.approx((agg + 0.5 + 0.30) / 3)
    assert vals["semeval_mmlu_gate_passed"] == 0.0
    assert notes["semeval_final"].startswith("warning: MMLU 0.300 is under the gate 0.371")
    # the gate is a task option
    vals, notes = compute(build_task("semeval25", {"mmlu_gate": "0.25"}).derived(), {"self": Results(sets)})
    assert vals["semeval_final"] == pytest.approx((agg + 0.5 + 0.30) / 3) and "semeval_final" not in notes


def test_without_member_files_mia_and_final_are_missing_with_notes():
    task = TASKS.get("semeval25")()
    sets = {"forget": _set("forget", FORGET), "retain": _set("retain", RETAIN), "mmlu": _mmlu(0.5)}
    vals, notes = compute(task.derived(), {"self": Results(sets)})
    assert vals["semeval_task_aggregate"] is not None
    assert vals["semeval_mia_score"] is None and vals["semeval_final"] is None
    assert "no eval set 'mia_member'" in notes["mia_loss_auc"]
    assert "@semeval_mia_score" in notes["semeval_final"]
    for key in ("mia_loss_auc", "semeval_mia_score", "semeval_final"):  # each says what to do
        assert notes[key].count("needs the organisers' member / non-member files, not in the public data: give "
                                "them as --task-set member=PATH --task-set nonmember=PATH") == 1
    # MMLU 0.5 passes the 7B gate; the gate is computed without the final score, and warns under it
    assert vals["semeval_mmlu_gate_passed"] == 1.0 and "semeval_mmlu_gate_passed" not in notes
    sets["mmlu"] = _mmlu(0.25)
    vals, notes = compute(task.derived(), {"self": Results(sets)})
    assert vals["semeval_mmlu_gate_passed"] == 0.0 and vals["semeval_final"] is None
    assert notes["semeval_mmlu_gate_passed"].startswith("warning: MMLU 0.250 is under the gate 0.371")
    with_files = TASKS.get("semeval25")(member=str(__file__), nonmember=str(__file__))
    assert "semeval_mmlu_gate" not in [n.name for n in with_files.derived()]  # semeval_final gates then
    _, notes = compute(with_files.derived(), {"self": Results(sets)})
    assert "member=PATH" not in notes["mia_loss_auc"]  # files given: the note names the missing set only


def test_subtask_aggregate_uses_its_four_numbers():
    task = TASKS.get("semeval25-task2")()
    sets = {"forget": _set("forget", FORGET, ("Task2",)), "retain": _set("retain", RETAIN, ("Task2",)),
            "mmlu": _mmlu(0.5)}
    vals, _ = compute(task.derived(), {"self": Results(sets)})
    # forget Task2: 1 - 0.5, 1 - 0.25; retain Task2: 0.5, 0.5
    assert vals["semeval_subtask_aggregate"] == pytest.approx(4 / (2 + 4 / 3 + 2 + 2))
    assert "semeval_task_aggregate" not in vals
    # an item of another subtask in the set is an error, not a silent 12-way mix
    sets["forget"] = _set("forget", FORGET)
    with pytest.raises(BenchError, match="holds an item of subtask 'Task1'"):
        compute(task.derived(), {"self": Results(sets)})


# --- errors -------------------------------------------------------------------------------


def test_unknown_subtask_lists_the_three():
    with pytest.raises(BenchError) as e:
        TASKS.get("semeval25-task4")
    msg = str(e.value)
    assert "\n" not in msg and all(f"'semeval25-task{k}'" in msg for k in (1, 2, 3))
    with pytest.raises(BenchError, match=r"expected one of Task1 \(semeval25-task1\), Task2 \(semeval25-task2\), "
                                         r"Task3 \(semeval25-task3\)"):
        semeval.check_subtask("Task4")


def test_bad_rows_named(mini):
    p = mini / "semeval25" / "forget.jsonl"
    rows = _rows("forget")
    rows[4]["id"] = "abc123"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"forget\.jsonl, row 4, field 'id': id 'abc123' names no item type"):
        build_task("semeval25", {}).load(mini)
    rows[4] = {"id": "x-sc1", "input": "i", "task": "Task1"}
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"row 4, field 'output': missing field"):
        build_task("semeval25", {}).load(mini)
    rows[4] = {"id": "x-sc1", "input": "i", "output": "o", "task": "Task7"}
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"row 4, field 'task': unknown subtask 'Task7'"):
        build_task("semeval25", {}).load(mini)


def test_options_checked(tmp_path):
    with pytest.raises(BenchError, match="give both member=PATH and nonmember=PATH"):
        build_task("semeval25", {"member": str(tmp_path / "m.jsonl")})
    with pytest.raises(BenchError, match=r"member='.*m\.jsonl': file not found"):
        build_task("semeval25", {"member": str(tmp_path / "m.jsonl"), "nonmember": str(tmp_path / "n.jsonl")})
    with pytest.raises(BenchError, match="unknown subject 'anatomi'; did you mean 'anatomy'"):
        build_task("semeval25", {"mmlu_subjects": "anatomi"})
    with pytest.raises(BenchError, match="mmlu_shots must be 0-5"):
        build_task("semeval25", {"mmlu_shots": "7"})


def test_missing_split_names_file_and_what_to_do(mini):
    (mini / "semeval25" / "retain.jsonl").unlink()
    with pytest.raises(DataError) as e:
        build_task("semeval25", {}).load(mini)
    assert str(e.value).startswith(f"{mini / 'semeval25' / 'retain.jsonl'}: file not found; use the organisers' "
                                   "forget / retain files unchanged (JSON Lines {id, input, output, task}")


def test_member_file_without_document_field(mini):
    mem, non = mini / "member.jsonl", mini / "nonmember.jsonl"
    mem.write_text(json.dumps({"id": "m0", "text": "x"}) + "\n")
    non.write_text(json.dumps({"id": "n0", "document": "y"}) + "\n")
    with pytest.raises(DataError, match=r"member\.jsonl, row 0, field 'document': missing field"):
        build_task("semeval25", {"member": str(mem), "nonmember": str(non), "mmlu_subjects": "anatomy"}).load(mini)
