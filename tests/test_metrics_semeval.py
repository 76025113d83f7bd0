"""SemEval-2025 Task 4: item kinds from the id, regurgitation / knowledge, 12-way aggregate
and final score nodes."""

from __future__ import annotations

import statistics

import pytest

from bench.errors import BenchError
from bench.graph import Derived, Ref, Results, compute
from bench.items import Item
from bench.metrics.base import EvalContext
from bench.metrics.semeval import SemEvalKnowledge, SemEvalRegurgitation, item_kind
from bench.prompts import PromptConfig
from bench.requests import GenerateResponse
from bench.task import SetResult

CTX = EvalContext(PromptConfig(style="plain"), max_new_tokens=256, format="raw")


def gen(text):
    return [GenerateResponse(text, 0)]


def it(oid, answer, task="Task1"):
    return Item(f"forget/{oid}", "input text", answer, meta={"id": oid, "task": task})


def test_kind_from_id():
    assert item_kind(it('"8f24"sc1', "x")) == "sc"
    assert item_kind(it('"8f24"qa3', "x")) == "qa"
    assert item_kind(it('"8f24"sc', "x")) is None  # id[:-1] must end with sc/qa
    assert item_kind(Item("abcqa2", "q", "a")) == "qa"  # no meta id: the item id


def test_regurgitation_and_knowledge_golden():
    sc, qa = it("xsc1", "the cats are running home"), it("xqa1", "  Paris ")
    r, k = SemEvalRegurgitation(), SemEvalKnowledge()
    # stemmed recall: "cat run" matches "cats ... running" -> 2 of 5 reference tokens
    assert r.score(sc, gen("cat run"), CTX) == {"task": "Task1", "score": pytest.approx(0.4)}
    assert r.score(qa, gen("Paris"), CTX) is None  # not an sc item
    assert k.score(qa, gen("paris"), CTX)["score"] == 1.0  # strip + lower
    assert k.score(qa, gen("Paris."), CTX)["score"] == 0.0  # exact match, punctuation counts
    assert k.score(sc, gen("x"), CTX) is None
    # empty generation: 0 for both (not missing, not an error); one token: recall 1/|ref|
    assert r.score(sc, gen(""), CTX)["score"] == 0.0 and k.score(qa, gen(""), CTX)["score"] == 0.0
    assert r.score(it("ysc1", "the cats ran"), gen("cats"), CTX)["score"] == pytest.approx(1 / 3)
    assert r.score(it("ysc1", "cats"), gen("cats"), CTX)["score"] == 1.0
    assert r.aggregate([{"task": "Task1", "score": 0.5}, None, {"task": "Task2", "score": 1.0}]) == 0.75
    with pytest.raises(BenchError, match="'task'"):
        r.score(Item("f/0", "q", "a", meta={"id": "xsc1"}), gen("a"), CTX)


def _vals(kind_scores):
    return [None if s is None else {"task": t, "score": s} for t, s in kind_scores]


def test_task_aggregate_and_final_nodes():
    fr = _vals([("Task1", 0.2), ("Task1", 0.4), ("Task2", 0.1), ("Task3", 0.5), (None, None)])
    fk = _vals([("Task1", 0.0), ("Task2", 1.0), ("Task2", 0.0), ("Task3", 0.0), ("Task1", 1.0)])
    rr = _vals([("Task1", 0.9), ("Task2", 0.8), ("Task3", 0.7)])
    rk = _vals([("Task1", 1.0), ("Task2", 1.0), ("Task2", 0.0), ("Task3", 1.0), ("Task3", 1.0)])

    def sr(name, **pi):
        n = len(next(iter(pi.values())))
        return SetResult(name, [str(i) for i in range(n)], {}, pi)

    run = Results({
        "forget": sr("forget", semeval_regurgitation=fr, semeval_knowledge=fk),
        "retain": sr("retain", semeval_regurgitation=rr + [None, None], semeval_knowledge=rk),
        "mmlu": SetResult("mmlu", ["0"], {"choice_accuracy": 0.5}, {}),
    })
    nodes = [
        Derived("semeval_task_aggregate", {
            "forget_regurgitation": Ref("forget/semeval_regurgitation"),
            "forget_knowledge": Ref("forget/semeval_knowledge"),
            "retain_regurgitation": Ref("retain/semeval_regurgitation"),
            "retain_knowledge": Ref("retain/semeval_knowledge")}),
        Derived("semeval_final", {"task_aggregate": Ref("@semeval_task_aggregate"),
                                  "mia_score": Ref("@mia"), "mmlu": Ref("mmlu/choice_accuracy", per_item=False)}),
    ]
    values, notes = compute(nodes, {"self": Results(run.sets, {"mia": 0.9})})
    # forget per task: regurgitation T1 0.3, T2 0.1, T3 0.5; knowledge T1 0.5, T2 0.5, T3 0.0
    # retain: regurgitation 0.9, 0.8, 0.7; knowledge 1.0, 0.5, 1.0
    want = statistics.harmonic_mean([0.7, 0.9, 0.5, 0.5, 0.5, 1.0, 0.9, 0.8, 0.7, 1.0, 0.5, 1.0])
    assert values["semeval_forget_Task1_regurgitation"] == pytest.approx(0.3)
    assert values["semeval_task_aggregate"] == pytest.approx(want)
    assert values["semeval_final_ungated"] == pytest.approx((want + 0.9 + 0.5) / 3)
    assert values["semeval_final"] == pytest.approx((want + 0.9 + 0.5) / 3)  # 0.5 >= 0.371
    assert values["semeval_mmlu_gate_passed"] == 1.0
    gated, _ = compute([nodes[0], Derived("semeval_final", nodes[1].inputs, options={"mmlu_gate": 0.6})],
                       {"self": Results(run.sets, {"mia": 0.9})})
    assert gated["semeval_final"] is None and gated["semeval_mmlu_gate_passed"] == 0.0
    assert gated["semeval_final_ungated"] == pytest.approx(values["semeval_final_ungated"])


def test_task_aggregate_missing_subtask_is_none():
    from bench.metrics.semeval import semeval_task_aggregate

    only1 = _vals([("Task1", 0.5)])
    out = semeval_task_aggregate(only1, only1, only1, only1)
    assert out["semeval_task_aggregate"] is None and out["semeval_forget_Task2_knowledge"] is None
